"""Budgets: a session's and a turn's limits on input tokens, output tokens and cost stop
a model that would call tools forever, at the first step boundary at or past the limit,
with outcome `budget_exceeded` and a `data-notice` the user sees; through the Python
client, the HTTP gateway and the command line."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from sessionflow import Budget, Price
from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.chunks import DataChunk, FinishChunk
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.client.session import Session
from sessionflow.contract import SessionLimits, TurnStatus, UsageReport
from sessionflow.errors import InvalidInput
from sessionflow.messages import DataPart, Message
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.streams.reader import StreamEvent
from tests.conftest import StartWorker
from tests.serving import serving
from tests.sse import frames
from tests.test_cli_chat import spawn


class NoInput(BaseModel):
    pass


async def _tick(_: NoInput, ctx: ToolContext) -> str:
    return "ok"


tick = tool("tick", "Do one more thing", input_schema=NoInput, execute=_tick)
# 80 characters of text and `{}` of input: 21 output tokens a step, as the scripted
# model counts them; its first turn calls `tick` for ever (past any step cap used here),
# its second answers at once.
_AGAIN = ScriptStep(
    text="Once more, to be sure: " + "x" * 57, tool_calls=[ScriptedToolCall(tool="tick")]
)
STEP_OUTPUT = 21


def looper_script(name: str) -> Script:
    return Script(name=name, delay=0.0, turns=[[_AGAIN] * 60, [ScriptStep(text="Done.")]])


session_capped = agent(
    "capped",
    model=looper_script("capped"),
    tools=[tick],
    session_budget=Budget(output_tokens=100),
)
free_running = agent("free", model=looper_script("free"), tools=[tick])
turn_capped = agent(
    "turncapped", model=looper_script("turncapped"), tools=[tick], turn_budget={"output_tokens": 50}
)
# Priced far above any real model so that a handful of steps add up to cents.
PRICE = Price(input=1000.0, output=2000.0)
costly = agent(
    "costly",
    model=looper_script("costly"),
    tools=[tick],
    prices={"scripted/costly": PRICE},
    turn_budget=Budget(cost=0.5),
)
AGENTS = [session_capped, free_running, turn_capped, costly]
# Steps per turn well above where any budget here stops a turn.
LIMITS = SessionLimits(max_steps_per_turn=40)


@pytest.fixture
async def client(start_worker: StartWorker) -> SessionClient:
    return await start_worker(AGENTS, limits=LIMITS)


async def run_turn(
    session: Session, text: str, **options: Any
) -> tuple[list[StreamEvent], TurnStatus, Message]:
    result = await session.send(text, **options)
    events = [e async for e in result.stream()]
    outcome = await result.outcome
    reply = (await session.history())[-1]
    assert reply.id == result.assistant_message_id
    return events, outcome.status, reply


def notice(events: list[StreamEvent], reply: Message) -> dict[str, Any]:
    """The budget notice, as streamed and as kept in history (they must agree)."""
    streamed = [e.chunk for e in events if e.type == "data-notice"]
    assert len(streamed) == 1 and isinstance(streamed[0], DataChunk)
    (kept,) = [p for p in reply.parts if isinstance(p, DataPart) and p.type == "data-notice"]
    assert kept.data == streamed[0].data
    finishes = [e.chunk for e in events if e.type == "finish"]
    assert len(finishes) == 1 and isinstance(finishes[0], FinishChunk)
    assert finishes[0].finish_reason == "length"
    assert events[-1].type == "finish"
    data: dict[str, Any] = kept.data
    assert data["kind"] == "budget-exceeded" and "budget" in data["text"]
    return data


def turn_usage(report: UsageReport, message_id: str) -> list[Any]:
    """The usage of each model step of one answer, in order."""
    return [s.usage for s in report.steps if s.message_id == message_id]


async def test_a_session_budget_stops_a_model_that_calls_tools_forever_at_the_limit(
    client: SessionClient, unique_id: str
) -> None:
    session = client.agent("capped").session(unique_id)
    events, status, reply = await run_turn(session, "keep going")
    assert status is TurnStatus.BUDGET_EXCEEDED
    data = notice(events, reply)
    assert (data["scope"], data["budget"], data["limit"]) == ("session", "output_tokens", 100)

    # Stopped at the first step boundary at or past the limit: not before, not after.
    report = await session.usage()
    steps = turn_usage(report, reply.id)
    outputs = [u.output_tokens for u in steps]
    assert outputs == [STEP_OUTPUT] * len(outputs)
    assert sum(outputs[:-1]) < 100 <= sum(outputs) == data["used"]
    assert reply.step_count() == len(steps) == math.ceil(100 / STEP_OUTPUT)
    # Every step's call ran: the turn stopped between steps, never inside one.
    assert all(p.state == "output-available" for p in reply.tool_parts())
    assert len(reply.tool_parts()) == len(steps)
    (turn,) = report.turns
    assert (turn.message_id, turn.steps, turn.usage.output_tokens) == (
        reply.id,
        len(steps),
        sum(outputs),
    )

    # The session's budget is spent: the next turn stops before its first model step.
    events, status, again = await run_turn(session, "and now?")
    assert status is TurnStatus.BUDGET_EXCEEDED
    assert notice(events, again)["scope"] == "session"
    assert again.step_count() == 0 and again.text() == ""
    after = await session.usage()
    assert len(after.steps) == len(report.steps) and after.total == report.total
    assert (await session.info()).status == "idle"

    # The operator raises it: the session goes on, up to its new limit.
    await session.update(session_budget={"output_tokens": 200})
    events, status, more = await run_turn(session, "go on")
    assert status is TurnStatus.BUDGET_EXCEEDED
    data = notice(events, more)
    assert (data["scope"], data["budget"], data["limit"]) == ("session", "output_tokens", 200)
    assert more.step_count() == math.ceil((200 - sum(outputs)) / STEP_OUTPUT)
    assert data["used"] == sum(outputs) + more.step_count() * STEP_OUTPUT


async def test_a_send_budget_stops_only_its_turn_and_only_tightens_the_agents(
    client: SessionClient, unique_id: str
) -> None:
    # No budget of the agent's: the send's own stops the turn.
    free = client.agent("free").session(unique_id)
    events, status, reply = await run_turn(free, "go", budget=Budget(output_tokens=60))
    assert status is TurnStatus.BUDGET_EXCEEDED
    data = notice(events, reply)
    assert (data["scope"], data["budget"], data["limit"]) == ("turn", "output_tokens", 60)
    assert reply.step_count() == math.ceil(60 / STEP_OUTPUT)
    # The next turn has no budget and answers (the script's second turn).
    _, status, answer = await run_turn(free, "thanks")
    assert status is TurnStatus.FINISHED and answer.text() == "Done."

    # An input budget counts every prompt token of the turn.
    free_in = client.agent("free").session(f"{unique_id}-in")
    events, status, reply = await run_turn(free_in, "go", budget={"input_tokens": 400})
    assert status is TurnStatus.BUDGET_EXCEEDED
    data = notice(events, reply)
    inputs = [u.total_input_tokens for u in turn_usage(await free_in.usage(), reply.id)]
    assert data["budget"] == "input_tokens" and sum(inputs[:-1]) < 400 <= sum(inputs)

    # The agent allows 50 output tokens a turn: a send asking for more gets 50, one
    # asking for less gets less.
    capped = client.agent("turncapped").session(f"{unique_id}-capped")
    events, status, reply = await run_turn(capped, "go", budget=Budget(output_tokens=10_000))
    assert status is TurnStatus.BUDGET_EXCEEDED
    assert notice(events, reply)["limit"] == 50 and reply.step_count() == math.ceil(50 / 21)
    capped_again = client.agent("turncapped").session(f"{unique_id}-capped2")
    events, status, reply = await run_turn(capped_again, "go", budget=Budget(output_tokens=20))
    assert notice(events, reply)["limit"] == 20 and reply.step_count() == 1

    with pytest.raises(InvalidInput, match="budget"):
        await free.send("x", budget={"output_tokens": 0})
    with pytest.raises(InvalidInput, match="budget"):
        await free.send("x", budget={"dollars": 1})


async def test_usage_reports_cost_per_step_turn_and_session_and_a_cost_budget_stops(
    client: SessionClient, unique_id: str
) -> None:
    session = client.agent("costly").session(unique_id)
    events, status, reply = await run_turn(session, "spend")
    assert status is TurnStatus.BUDGET_EXCEEDED
    data = notice(events, reply)
    assert (data["scope"], data["budget"], data["limit"]) == ("turn", "cost", 0.5)

    report = await session.usage()
    steps = turn_usage(report, reply.id)
    for used in steps:
        expected = (used.input_tokens * 1000.0 + used.output_tokens * 2000.0) / 1_000_000
        assert used.cost == pytest.approx(expected)
    costs = [u.cost for u in steps]
    assert sum(costs[:-1]) < 0.5 <= sum(costs)
    assert data["used"] == pytest.approx(sum(costs))
    (turn,) = report.turns
    assert turn.usage.cost == pytest.approx(sum(costs))
    assert report.total.cost == pytest.approx(sum(costs))
    assert report.by_model["scripted/costly"].cost == pytest.approx(sum(costs))
    assert (await session.info()).usage.cost == pytest.approx(sum(costs))

    # A free model (the scripted one, unpriced) costs 0, not None.
    free = client.agent("free").session(f"{unique_id}-free")
    await run_turn(free, "go", budget=Budget(output_tokens=30))
    assert (await free.usage()).total.cost == 0


@pytest.fixture
async def gateway_url(client: SessionClient) -> AsyncIterator[str]:
    from sessionflow.gateway.app import create_app
    from sessionflow.gateway.config import GatewayConfig

    config = GatewayConfig(api_keys={"key-for-budgets-01": "acme"}, default_agent="free")
    async with serving(create_app(client, config)) as url:
        yield url


async def test_a_turn_budget_over_http(gateway_url: str, unique_id: str) -> None:
    auth = {"Authorization": "Bearer key-for-budgets-01"}
    base = f"{gateway_url}/v1/sessions/{unique_id}"
    async with httpx.AsyncClient(timeout=60) as http:
        sent = await http.post(
            f"{base}/messages",
            json={"message": "go", "budget": {"outputTokens": 40}},
            headers=auth,
        )
        assert sent.status_code == 202, sent.text
        answer = sent.json()["assistantMessageId"]
        ended = await http.get(f"{base}/messages/{answer}/outcome?wait=30", headers=auth)
        assert ended.status_code == 200, ended.text
        assert ended.json()["status"] == "budget_exceeded"
        history = (await http.get(f"{base}/history", headers=auth)).json()["messages"]
        (note,) = [p for p in history[-1]["parts"] if p["type"] == "data-notice"]
        assert (note["data"]["scope"], note["data"]["limit"]) == ("turn", 40)
        usage = (await http.get(f"{base}/usage", headers=auth)).json()
        (turn,) = usage["turns"]
        assert turn["messageId"] == answer and turn["usage"]["outputTokens"] >= 40
        assert turn["usage"]["cost"] == 0 and usage["total"]["cost"] == 0

        refused = await http.post(
            f"{base}/messages", json={"message": "go", "budget": {"cost": -1}}, headers=auth
        )
        assert refused.status_code == 422 and "budget.cost" in refused.text
        # A tenant cannot give its session a budget over its agent's: only the operator.
        lifted = await http.patch(
            base, json={"sessionBudget": {"outputTokens": 10**9}}, headers=auth
        )
        assert lifted.status_code == 422 and "unexpected field" in lifted.text


async def test_a_turn_budget_through_the_ai_sdks_chat_endpoint(
    gateway_url: str, unique_id: str
) -> None:
    """`useChat`'s `sendMessage(message, {body: {budget}})` lands in /api/chat's body:
    the turn stops at the budget, its note streamed before the `finish`."""
    auth = {"Authorization": "Bearer key-for-budgets-01"}
    body = {
        "id": unique_id,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}],
        "budget": {"outputTokens": 40},
    }
    chunks = []
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream("POST", f"{gateway_url}/api/chat", json=body, headers=auth) as answer,
    ):
        assert answer.status_code == 200
        async for frame in frames(answer):
            if frame.data is not None and frame.data != "[DONE]":
                chunks.append(json.loads(frame.data))
    notes = [c for c in chunks if c["type"] == "data-notice"]
    assert [(n["data"]["kind"], n["data"]["limit"]) for n in notes] == [("budget-exceeded", 40)]
    assert chunks[-1]["type"] == "finish"

    async with httpx.AsyncClient(timeout=60) as http:
        body["budget"] = {"outputTokens": 0}
        refused = await http.post(f"{gateway_url}/api/chat", json=body, headers=auth)
    assert refused.status_code == 422 and "budget" in refused.text


async def test_the_command_line_sends_with_a_turn_budget(
    stack: LocalStack, client: SessionClient, task_queue: str, unique_id: str
) -> None:
    args = ("send", unique_id, "--agent", "free", "--budget-output-tokens", "30", "go")
    sender = await spawn(stack, task_queue, *args)
    out, errors = await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 0, errors.decode()
    assert "[Stopped: this turn's budget of 30 output tokens is reached (42 used)" in out.decode()
    reply = (await client.agent("free").session(unique_id).history())[-1]
    outcome = await client.agent("free").session(unique_id).answer(reply.id).outcome
    assert outcome.status is TurnStatus.BUDGET_EXCEEDED

    refused = await spawn(stack, task_queue, *args[:4], "--budget-cost", "0", "go")
    _, errors = await asyncio.wait_for(refused.communicate(), timeout=60)
    assert refused.returncode == 2 and "--budget-cost" in errors.decode()


async def test_the_command_line_gives_a_spent_session_a_budget_of_its_own(
    stack: LocalStack, client: SessionClient, task_queue: str, unique_id: str
) -> None:
    session = client.agent("capped").session(unique_id)
    assert (await run_turn(session, "keep going"))[1] is TurnStatus.BUDGET_EXCEEDED
    used = (await session.usage()).total.output_tokens

    raised = await spawn(stack, task_queue, "budget", unique_id, "--agent", "capped", "--output-tokens", "150")  # fmt: skip
    out, errors = await asyncio.wait_for(raised.communicate(), timeout=60)
    assert raised.returncode == 0, errors.decode()
    assert f"Session {unique_id}'s own budget: output_tokens 150" in out.decode()
    # Spent, the turn would stop before its first step; raised, the model answers.
    _, status, more = await run_turn(session, "go on")
    assert status is TurnStatus.FINISHED and more.text() == "Done."
    assert (await session.usage()).total.output_tokens > used

    nothing = await spawn(stack, task_queue, "budget", unique_id, "--agent", "capped")
    _, errors = await asyncio.wait_for(nothing.communicate(), timeout=60)
    assert nothing.returncode == 2 and "--output-tokens" in errors.decode()
