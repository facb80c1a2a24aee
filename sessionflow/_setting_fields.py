"""How each `Settings` field is read (`sessionflow.config`): the `Parse` marker its
annotation carries, naming the function that turns the variable's text (or a value
given in code) into the field's value, and the small readers that need more than one
of `sessionflow._setting_values`' checks. Each reader is told the field's variable, so
every error names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices

from sessionflow._setting_values import (
    ConfigError,
    parse_address,
    parse_api_keys,
    parse_choice,
    parse_idle_ttl,
    parse_payload_store,
    parse_positive,
    parse_switch,
    parse_tenant,
    parse_whole,
)
from sessionflow.ids import TENANT as TENANT_NAME
from sessionflow.prices import Price, parse_prices, prices_from


@dataclass(frozen=True)
class Parse:
    """How a field's value is read: `parse(value, variable)` returns it or raises
    `ConfigError`. `value` is the variable's text, or what code passed."""

    parse: Callable[[Any, str], Any]


def whole(low: int = 1, high: int | None = None) -> Parse:
    return Parse(lambda raw, name: parse_whole(raw, name, low, high))


def positive(kind: type[int] | type[float]) -> Parse:
    return Parse(lambda raw, name: parse_positive(raw, name, kind))


def choice(*options: str) -> Parse:
    return Parse(lambda raw, name: parse_choice(str(raw), name, options))


def read_address(raw: str, name: str) -> str:
    value = raw.strip()
    parse_address(value, name)
    return value


def read_switch(raw: str | bool, name: str) -> bool | None:
    return raw if isinstance(raw, bool) else parse_switch(raw, name)


def read_tenant(raw: str | None, name: str) -> str | None:
    return None if raw is None else parse_tenant(raw, name)


def read_metrics_address(raw: str, name: str) -> str:
    value = raw.strip()
    if value:
        parse_address(value, name, "127.0.0.1:9464")
    return value


def read_idle_ttl(raw: str | int | None, name: str) -> int | None:
    if raw is None or isinstance(raw, int):
        return raw or None
    return parse_idle_ttl(raw, name)


def read_prices(raw: str | Mapping[str, Any], name: str) -> dict[str, Price]:
    try:
        return parse_prices(raw, name) if isinstance(raw, str) else prices_from(raw, name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def read_payload_store(raw: str | None, name: str) -> str | None:
    value = (raw or "").strip() or None
    if value is not None:
        parse_payload_store(value, name)  # a bad value fails here, at start
    return value


def read_api_keys(raw: str | Mapping[str, str], name: str) -> dict[str, str]:
    return parse_api_keys(raw, name) if isinstance(raw, str) else dict(raw)


def read_webhook_secrets(raw: str | Mapping[str, str], name: str) -> dict[str, str]:
    """`tenant:secret,tenant:secret` -> {tenant: secret}; never repeats a secret."""
    if not isinstance(raw, str):
        return dict(raw)
    secrets: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        tenant, sep, secret = entry.partition(":")
        if not sep or len(secret) < 8 or not TENANT_NAME.match(tenant):
            raise ConfigError(
                f"{name} entries must look like '<tenant>:<secret of 8+ characters>' "
                "with a tenant of letters, digits, '_' or '-'"
            )
        secrets[tenant] = secret
    return secrets


def read_names(raw: str | tuple[str, ...] | list[str], name: str) -> tuple[str, ...]:
    entries = raw.split(",") if isinstance(raw, str) else raw
    return tuple(e.strip() for e in entries if e.strip())


def read_log_format(raw: str | None, name: str) -> str | None:
    value = (raw or "").strip().lower()
    return parse_choice(value, name, ("json", "console")) if value else None


def read_stripped(raw: str, name: str) -> str:
    return raw.strip()


def read_optional_stripped(raw: str | None, name: str) -> str | None:
    return (raw or "").strip() or None


def optional(parse: Parse) -> Parse:
    """`parse`, but None (unset) passes as None."""
    return Parse(lambda raw, name: None if raw is None else parse.parse(raw, name))


def env_names(*names: str) -> str | AliasChoices:
    """The variable(s) of a field that does not follow `SESSIONFLOW_<FIELD>`; the first
    set wins."""
    return names[0] if len(names) == 1 else AliasChoices(*names)


def shown(text: str) -> dict[str, Any]:
    """The default as README's table tells it, where it is not one value."""
    return {"shown_default": text}
