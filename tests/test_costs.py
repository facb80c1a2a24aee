"""Cost and token totals with real providers' SDKs against local fakes of their APIs:
`usage()` prices each step by the price table (built in, the deployment's, the
agent's), totals and the `SessionTokens` search attribute count cache reads and
writes, the OpenAI-compatible path records cache writes, and every provider's request
carries an output-token limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessionflow import Budget, Price
from sessionflow.agents.definition import agent
from sessionflow.client.client import SessionClient
from sessionflow.config import ConfigError, Settings
from sessionflow.contract import TurnStatus
from sessionflow.errors import InvalidModelRequest
from sessionflow.providers.anthropic import AnthropicProvider
from sessionflow.providers.base import ModelRequest
from sessionflow.providers.openai import OpenAIProvider
from sessionflow.workflows import search
from tests import fake_anthropic, fake_openai
from tests.conftest import StartWorker
from tests.fake_anthropic import FakeAnthropic
from tests.fake_openai import FakeOpenAI
from tests.serving import serving

claude = agent("claude", model="anthropic/claude-sonnet-4-6")
terse_claude = agent("terse", model="anthropic/claude-haiku-4-5", max_output_tokens=1234)
gpt = agent("gpt", model="openai/gpt-4.1-mini")
terse_gpt = agent("tersegpt", model="openai/gpt-4.1-mini", max_output_tokens=321)
# The same model at the agent's own price.
discounted = agent(
    "discounted",
    model="openai/gpt-4.1-mini",
    prices={"openai/gpt-4.1-mini": {"input": 0.2, "output": 1.6}},
)
local = agent("local", model="openai/llama3.1")
priced_by_deployment = agent("qwen", model="openai/qwen3")
local_on_budget = agent("localbudget", model="openai/llama3.1", turn_budget=Budget(cost=1.0))
AGENTS = [claude, terse_claude, gpt, terse_gpt, discounted, local, priced_by_deployment]
AGENTS.append(local_on_budget)
# What the deployment prices (SESSIONFLOW_PRICES, given to the worker as its options).
DEPLOYMENT_PRICES = {"openai/qwen3": Price(input=0.5, output=1.5)}


@pytest.fixture
async def anthropic_api() -> AsyncIterator[FakeAnthropic]:
    api = FakeAnthropic()
    async with serving(api.app) as api.url:
        yield api


@pytest.fixture
async def openai_api() -> AsyncIterator[FakeOpenAI]:
    api = FakeOpenAI()
    async with serving(api.app) as api.url:
        yield api


@pytest.fixture
async def client(
    start_worker: StartWorker, anthropic_api: FakeAnthropic, openai_api: FakeOpenAI
) -> SessionClient:
    providers = [
        AnthropicProvider(api_key="sk-ant-test", base_url=anthropic_api.url),
        OpenAIProvider(api_key="sk-openai-test", base_url=f"{openai_api.url}/v1"),
    ]
    return await start_worker(AGENTS, providers=providers, prices=DEPLOYMENT_PRICES)


async def finished(client: SessionClient, session_id: str, agent_name: str) -> None:
    result = await client.agent(agent_name).session(session_id).send("hi")
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FINISHED, outcome.error


async def search_tokens(client: SessionClient, workflow_id: str, tokens: int) -> list[object]:
    """The session, found by its SessionTokens value (visibility lags: ask a few times)."""
    query = f'WorkflowId = "{workflow_id}" AND {search.TOKENS.name} = {tokens}'
    for _ in range(100):
        found = [w async for w in client.temporal.list_workflows(query)]
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


async def test_claude_steps_are_priced_with_cache_reads_and_writes_and_totals_count_them(
    client: SessionClient, anthropic_api: FakeAnthropic, unique_id: str
) -> None:
    counts = {"input_tokens": 40, "cache_read": 300, "cache_write": 120}  # and 30 out
    anthropic_api.push(fake_anthropic.answer("One.", **counts))
    anthropic_api.push(fake_anthropic.answer("Two.", **counts))
    await finished(client, unique_id, "claude")
    await finished(client, unique_id, "claude")

    # Sonnet 4.6: $3 input, $15 output, $3.75 cache writes, $0.30 cache reads per MTok.
    one = (40 * 3 + 30 * 15 + 120 * 3.75 + 300 * 0.30) / 1_000_000
    report = await client.agent("claude").session(unique_id).usage()
    assert [s.usage.cost for s in report.steps] == [pytest.approx(one)] * 2
    assert [t.usage.cost for t in report.turns] == [pytest.approx(one)] * 2
    assert [t.steps for t in report.turns] == [1, 1]
    assert report.total.cost == pytest.approx(2 * one)
    assert report.by_model["anthropic/claude-sonnet-4-6"].cost == pytest.approx(2 * one)
    # Totals count every token: 40 + 30 + 120 + 300 per step.
    assert report.total.total_tokens == 2 * 490
    assert report.total.total_input_tokens == 2 * 460
    session = client.agent("claude").session(unique_id)
    assert (await session.info()).usage.total_tokens == 980
    assert await search_tokens(client, session.workflow_id, 980)

    # Every request carries an output-token limit: the provider's, or the agent's.
    assert [r.body["max_tokens"] for r in anthropic_api.requests] == [8192, 8192]
    anthropic_api.push(fake_anthropic.answer("Short."))
    await finished(client, f"{unique_id}-terse", "terse")
    assert anthropic_api.requests[-1].body["max_tokens"] == 1234


async def test_the_openai_path_records_cache_writes_prices_steps_and_limits_output(
    client: SessionClient, openai_api: FakeOpenAI, unique_id: str
) -> None:
    # OpenRouter's report: 340 prompt tokens, of which 200 read from the cache and 100
    # written to it.
    counts = {"prompt": 340, "completion": 12, "cached": 200, "cache_write": 100}
    openai_api.push(fake_openai.answer("Hello.", **counts))
    await finished(client, unique_id, "gpt")
    report = await client.agent("gpt").session(unique_id).usage()
    used = report.total
    assert (used.input_tokens, used.cache_read_tokens, used.cache_write_tokens) == (40, 200, 100)
    assert used.total_tokens == 352
    # GPT-4.1 mini: $0.40 input (and cache writes, which OpenAI does not charge extra
    # for), $0.10 cached input, $1.60 output per MTok.
    assert used.cost == pytest.approx((40 * 0.40 + 100 * 0.40 + 200 * 0.10 + 12 * 1.60) / 1e6)
    (sent,) = openai_api.requests
    # A compatible server that is not OpenAI's gets `max_tokens`, which all of them read.
    assert sent.body["max_tokens"] == 8192 and "max_completion_tokens" not in sent.body
    session = client.agent("gpt").session(unique_id)
    assert await search_tokens(client, session.workflow_id, 352)

    openai_api.push(fake_openai.answer("Hi.", prompt=10, completion=2))
    await finished(client, f"{unique_id}-terse", "tersegpt")
    assert openai_api.requests[-1].body["max_tokens"] == 321

    # The agent's price wins over the built-in one; the deployment's prices a model
    # the built-in table does not know; a model with no price has no cost, not 0.
    for name, expected in (
        ("discounted", (1000 * 0.2 + 100 * 1.60) / 1e6),
        ("qwen", (1000 * 0.5 + 100 * 1.5) / 1e6),
        ("local", None),
    ):
        openai_api.push(fake_openai.answer("Fine.", prompt=1000, completion=100))
        await finished(client, f"{unique_id}-{name}", name)
        total = (await client.agent(name).session(f"{unique_id}-{name}").usage()).total
        assert total.cost == (pytest.approx(expected) if expected is not None else None), name
        assert total.total_tokens == 1100


async def test_a_cost_budget_on_a_model_without_a_price_fails_before_calling_it(
    client: SessionClient, openai_api: FakeOpenAI, unique_id: str
) -> None:
    session = client.agent("localbudget").session(unique_id)
    outcome = await (await session.send("hi")).outcome
    assert outcome.status is TurnStatus.FAILED and outcome.error_type == "PriceUnknown"
    assert outcome.error is not None and "openai/llama3.1" in outcome.error
    assert openai_api.requests == []  # the model was never called
    # A send's cost budget needs a price as much as the agent's does.
    free = client.agent("local").session(f"{unique_id}-free")
    outcome = await (await free.send("hi", budget=Budget(cost=0.01))).outcome
    assert outcome.error_type == "PriceUnknown" and openai_api.requests == []


def test_openai_s_own_api_gets_max_completion_tokens() -> None:
    """OpenAI's reasoning models refuse `max_tokens`; other servers may not know the
    newer name. The field follows the server."""
    request = ModelRequest(model="o3", system=None, messages=[], tools=[])
    for base_url, field in (
        (None, "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("https://acme.openai.azure.com/openai/v1", "max_completion_tokens"),
        ("http://localhost:11434/v1", "max_tokens"),
        ("https://openrouter.ai/api/v1", "max_tokens"),
    ):
        body = OpenAIProvider(api_key="k", base_url=base_url, max_tokens=99).request_body(request)
        (other,) = {"max_tokens", "max_completion_tokens"} - {field}
        assert body[field] == 99 and other not in body, base_url


def test_deployment_prices_come_from_a_setting_or_a_file(tmp_path: Path) -> None:
    given = {"openai/qwen3": {"input": 0.5, "output": 1.5, "cache_read": 0.05}}
    settings = Settings.from_env({"SESSIONFLOW_PRICES": json.dumps(given)})
    price = settings.prices["openai/qwen3"]
    assert (price.input, price.output, price.cache_read, price.cache_write) == (0.5, 1.5, 0.05, 0.5)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(given))
    assert Settings.from_env({"SESSIONFLOW_PRICES": str(path)}).prices == settings.prices
    for bad in ('{"qwen3": {"input": 1, "output": 1}}', '{"openai/x": {"input": -1}}', "[1]"):
        with pytest.raises(ConfigError, match="SESSIONFLOW_PRICES"):
            Settings.from_env({"SESSIONFLOW_PRICES": bad})
    assert Settings.from_env({"SESSIONFLOW_OPENAI_MAX_TOKENS": "100"}).openai_max_tokens == 100


def test_a_thinking_budget_must_fit_under_the_steps_output_limit() -> None:
    """Anthropic refuses a thinking budget at or over `max_tokens`: an agent whose
    `max_output_tokens` leaves no room fails its step at once, naming both."""
    provider = AnthropicProvider(api_key="k", max_tokens=8192, thinking_budget=2048)
    fits = ModelRequest(model="claude-sonnet-4-6", system=None, messages=[], tools=[])
    body = provider.request_body(fits)
    assert body["max_tokens"] == 8192 and body["thinking"]["budget_tokens"] == 2048
    tight = fits.model_copy(update={"max_output_tokens": 2048})
    with pytest.raises(
        InvalidModelRequest, match=r"thinking budget \(2048 tokens.*output limit \(2048"
    ):
        provider.request_body(tight)
