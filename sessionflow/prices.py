"""What a model step costs: per-model prices and the cost of a step's tokens.

A price is four rates in US dollars per million tokens: uncached input, output, cache
writes and cache reads, which is how Anthropic and OpenAI bill (a cache write costs
more than input at Anthropic, 1.25x for the 5-minute cache; a cache read is a tenth of
it or less). Costs are computed where each model step runs (the model-step activity)
and recorded with its usage, so `usage()` reports what the prices said at the time.

Prices are looked up by model id as agents name models (`anthropic/claude-sonnet-4-6`,
`openai/gpt-4.1-mini`): the agent's own `prices=` first, then `SESSIONFLOW_PRICES`,
then `BUILTIN_PRICES` below. A dated snapshot (`...-20250929`, `...-2024-08-06`) or
`-latest` costs what its model does unless it has an entry of its own. A model with
no price has no cost: `None`, never 0, so an unknown figure is never read as free.
The scripted model costs nothing.

The built-in table is the providers' list prices for standard (not batch, not
priority, not long-context) requests, as published in 2026; it goes stale as they
change, which is why it can be overridden.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sessionflow.messages import Usage
from sessionflow.validation import describe

PER = 1_000_000  # prices are per million tokens


class Price(BaseModel):
    """A model's price in US dollars per million tokens. Cache rates left out cost
    what uncached input does (no discount is assumed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    cache_read: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _cache_rates(self) -> Price:
        # Frozen: fill the defaults through the instance dict.
        if self.cache_write is None:
            object.__setattr__(self, "cache_write", self.input)
        if self.cache_read is None:
            object.__setattr__(self, "cache_read", self.input)
        return self

    def cost(self, usage: Usage) -> float:
        """What `usage` costs at this price, in US dollars."""
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_write_tokens * (self.cache_write or 0.0)
            + usage.cache_read_tokens * (self.cache_read or 0.0)
        ) / PER


def _anthropic(input: float, output: float) -> Price:
    """Anthropic's rates: 5-minute cache writes at 1.25x input, reads at 0.1x."""
    return Price(input=input, output=output, cache_write=input * 1.25, cache_read=input / 10)


def _openai(input: float, cached: float, output: float) -> Price:
    """OpenAI's rates: cached input has its own rate, and writing the cache costs
    nothing beyond the input itself."""
    return Price(input=input, output=output, cache_write=input, cache_read=cached)


# Model id -> price (USD per million tokens); see the module docstring.
BUILTIN_PRICES: dict[str, Price] = {
    # Anthropic (platform.claude.com/docs/en/about-claude/pricing)
    "anthropic/claude-opus-4-6": _anthropic(5.0, 25.0),
    "anthropic/claude-opus-4-5": _anthropic(5.0, 25.0),
    "anthropic/claude-opus-4-1": _anthropic(15.0, 75.0),
    "anthropic/claude-opus-4-0": _anthropic(15.0, 75.0),
    "anthropic/claude-opus-4": _anthropic(15.0, 75.0),
    "anthropic/claude-sonnet-4-6": _anthropic(3.0, 15.0),
    "anthropic/claude-sonnet-4-5": _anthropic(3.0, 15.0),
    "anthropic/claude-sonnet-4-0": _anthropic(3.0, 15.0),
    "anthropic/claude-sonnet-4": _anthropic(3.0, 15.0),
    "anthropic/claude-3-7-sonnet": _anthropic(3.0, 15.0),
    "anthropic/claude-3-5-sonnet": _anthropic(3.0, 15.0),
    "anthropic/claude-haiku-4-5": _anthropic(1.0, 5.0),
    "anthropic/claude-3-5-haiku": _anthropic(0.8, 4.0),
    "anthropic/claude-3-opus": _anthropic(15.0, 75.0),
    "anthropic/claude-3-haiku": Price(input=0.25, output=1.25, cache_write=0.30, cache_read=0.03),
    # OpenAI (platform.openai.com/docs/pricing)
    "openai/gpt-5.1": _openai(1.25, 0.125, 10.0),
    "openai/gpt-5": _openai(1.25, 0.125, 10.0),
    "openai/gpt-5-mini": _openai(0.25, 0.025, 2.0),
    "openai/gpt-5-nano": _openai(0.05, 0.005, 0.40),
    "openai/gpt-4.1": _openai(2.0, 0.50, 8.0),
    "openai/gpt-4.1-mini": _openai(0.40, 0.10, 1.60),
    "openai/gpt-4.1-nano": _openai(0.10, 0.025, 0.40),
    "openai/gpt-4o": _openai(2.50, 1.25, 10.0),
    "openai/gpt-4o-mini": _openai(0.15, 0.075, 0.60),
    "openai/o3": _openai(2.0, 0.50, 8.0),
    "openai/o4-mini": _openai(1.10, 0.275, 4.40),
    "openai/o3-mini": _openai(1.10, 0.55, 4.40),
    "openai/o1": _openai(15.0, 7.50, 60.0),
}

FREE = Price(input=0, output=0)
# A dated snapshot or alias of a model: `-20250929`, `-2024-08-06`, `-latest`.
_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")

PriceMap = Mapping[str, Price | Mapping[str, Any]]


def prices_from(given: PriceMap | None, where: str) -> dict[str, Price]:
    """A map of model id -> price from `Price`s or plain dicts (`{"input": 3, ...}`);
    `ValueError` naming `where` and the entry for anything else."""
    found: dict[str, Price] = {}
    for model, price in (given or {}).items():
        if not isinstance(model, str) or "/" not in model:
            raise ValueError(f"{where}: a price is keyed by a 'provider/model' id, not {model!r}")
        try:
            found[model] = price if isinstance(price, Price) else Price.model_validate(price)
        except ValidationError as err:
            problems = describe(err, Price)
            raise ValueError(f"{where}: the price of {model!r} is not valid ({problems})") from None
    return found


def parse_prices(raw: str, name: str) -> dict[str, Price]:
    """`SESSIONFLOW_PRICES`: a JSON object of model id -> {input, output, cache_write?,
    cache_read?} (USD per million tokens), or the path of a file holding one."""
    text = raw.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as err:
            raise ValueError(
                f"{name}: cannot read the price file {raw!r} ({err.strerror})"
            ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} must be a JSON object of model id -> price ({err.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be a JSON object of model id -> price")
    return prices_from(data, name)


class PriceTable:
    """Prices by model id, each layer over the ones below: `overrides` (an agent's),
    then the deployment's (`SESSIONFLOW_PRICES`), then the built-in table."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices = {**BUILTIN_PRICES, **(prices or {})}

    def with_overrides(self, overrides: Mapping[str, Price] | None) -> PriceTable:
        if not overrides:
            return self
        table = PriceTable()
        table._prices = {**self._prices, **overrides}
        return table

    def price(self, model_id: str) -> Price | None:
        """The price of `model_id`, or None when none is known."""
        found = self._prices.get(model_id)
        if found is not None:
            return found
        plain = _SNAPSHOT.sub("", model_id)
        if plain != model_id and plain in self._prices:
            return self._prices[plain]
        if model_id.startswith("scripted/"):
            return FREE
        return None

    def cost(self, model_id: str, usage: Usage) -> float | None:
        """What `usage` of `model_id` costs in US dollars; None for an unknown price."""
        price = self.price(model_id)
        return None if price is None else price.cost(usage)
