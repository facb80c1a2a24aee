"""Transient context never reaches Temporal; persisted state survives everything."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from temporalio.service import RPCError

from sessionflow.agents.definition import agent
from sessionflow.contract import TurnStatus
from sessionflow.errors import InvalidInput
from sessionflow.providers.scripted import Script, ScriptStep
from tests.agents import Counter, context_agent, counter_agent
from tests.conftest import StartWorker

SECRET = "sk-live-7f3a9c-never-store-me"


async def test_context_reaches_tools_and_options_but_never_temporal(
    start_worker: StartWorker, unique_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_worker([context_agent])
    client.agents[context_agent.name] = context_agent
    session = client.agent(context_agent).session(unique_id)
    result = await session.send(
        "who am I?", context={"user": "ada", "api_token": SECRET, "premium": True}
    )
    assert (await result.outcome).status is TurnStatus.FINISHED

    reply = (await session.history())[-1]
    # The resolvable system prompt and the tool both saw the context.
    assert reply.text().startswith("[You are helping ada.] ")
    assert reply.tool_parts()[0].output == {"user": "ada", "token_length": len(SECRET)}

    # Nothing Temporal keeps holds the secret: every event of the workflow's history,
    # byte for byte (signals, activity inputs and results, memo, search attributes).
    history = await client.temporal.get_workflow_handle(session.workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert SECRET.encode() not in raw
    assert b"ada" in raw  # the search works: tool output with the user name is there
    description = await client.temporal.get_workflow_handle(session.workflow_id).describe()
    assert SECRET not in str(description.raw_description)
    assert SECRET not in caplog.text


async def test_context_is_deleted_from_redis_when_its_turn_ends(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([context_agent])
    session = client.agent(context_agent).session(unique_id)
    pattern = f"sf:{{{session.workflow_id}}}:ctx:*"
    first = await session.send("who am I?", context={"user": "ada", "api_token": SECRET})
    # Queued behind the first turn: its context must outlive the first turn's.
    second = await session.send("and now?", context={"user": "bob", "api_token": "tok-2"})
    assert (await first.outcome).status is TurnStatus.FINISHED
    assert (await second.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text().startswith("[You are helping bob.] ")
    assert [k async for k in client.redis.scan_iter(match=pattern)] == []
    raw = b"".join([v async for v in _values(client.redis)])
    assert SECRET.encode() not in raw


async def _values(redis: Any) -> Any:
    async for key in redis.scan_iter():
        if await redis.type(key) == b"string":
            yield await redis.get(key)


async def test_invalid_context_is_rejected_before_the_workflow_starts(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([context_agent])
    session = client.agent(context_agent).session(unique_id)
    with pytest.raises(InvalidInput, match=r"context does not match Caller: api_token") as err:
        await session.send("hi", context={"user": "ada", "api_tokn": SECRET})
    assert SECRET not in str(err.value)
    with pytest.raises(RPCError, match="not found"):
        await client.temporal.get_workflow_handle(session.workflow_id).describe()


async def test_a_tool_keeps_a_counter_in_state_across_turns_and_a_worker_restart(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([counter_agent])
    session = client.agent(counter_agent).session(unique_id)
    for expected in (1, 2):
        result = await session.send("count")
        assert (await result.outcome).status is TurnStatus.FINISHED
        assert (await session.history())[-1].text() == f"The counter is now {expected}."

    # Replace the worker: the new one has an empty cache and replays the session.
    await client_worker_restart(start_worker, counter_agent)
    result = await session.send("count")
    assert (await result.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "The counter is now 3."
    assert await session.state() == Counter(count=3)
    # A client that only knows the agent's name gets the state as a dict.
    assert await client.agent("counter").session(unique_id).state() == {"count": 3}
    # Its tool is plain Python: three turns of calls, and no sandbox was ever made.
    assert (await session.info()).sandbox_id is None
    assert await session.sandbox.get_status() is None


async def client_worker_restart(start_worker: StartWorker, served: object) -> None:
    from tests.conftest import RUNNING_WORKERS

    for worker, task in list(RUNNING_WORKERS):
        await worker.shutdown()
        await task
        RUNNING_WORKERS.remove((worker, task))
    await start_worker([served])


async def test_resolvable_model_and_active_tools_follow_context_and_state(
    start_worker: StartWorker, unique_id: str
) -> None:
    from tests.agents import Caller, increment_tool, whoami_tool

    basic = Script(name="basic", delay=0, turns=[[ScriptStep(text="basic model")]])
    premium = Script(name="premium", delay=0, turns=[[ScriptStep(text="premium model")]])
    seen_tools: list[list[str]] = []

    def tools_for(ctx: object) -> list[str]:
        names = ["whoami"] if ctx.context.premium else []
        seen_tools.append(names)
        return names

    picky = agent(
        "picky",
        model=lambda ctx: premium if ctx.context.premium else "scripted/basic",
        tools=[whoami_tool, increment_tool],
        context_schema=Caller,
        active_tools=tools_for,
    )
    client = await start_worker([picky], scripts=[basic])
    session = client.agent(picky).session(unique_id)
    first = await session.send("hi", context={"user": "a", "api_token": "t", "premium": False})
    await first.done
    second = await session.send("hi", context={"user": "a", "api_token": "t", "premium": True})
    await second.done
    texts = [m.text() for m in (await session.history())[1::2]]
    assert texts == ["basic model", "premium model"]
    assert seen_tools == [[], ["whoami"]]
    usage = await session.usage()
    assert set(usage.by_model) == {"scripted/basic", "scripted/premium"}
    assert [s.model for s in usage.steps] == ["scripted/basic", "scripted/premium"]
    assert usage.total.output_tokens == sum(s.usage.output_tokens for s in usage.steps)


async def test_state_is_readable_by_options_and_the_client_before_any_tool(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([counter_agent])
    session = client.agent(counter_agent).session(unique_id)
    assert await asyncio.wait_for(_state_or_none(session), 5) is None
    result = await session.send("count")
    await result.done
    assert await session.state() == Counter(count=1)


async def _state_or_none(session: object) -> object:
    from sessionflow.errors import SessionNotFound

    try:
        return await session.state()  # type: ignore[attr-defined]
    except SessionNotFound:
        return None


async def test_options_see_state_read_only_and_a_change_fails_the_step_naming_it(
    start_worker: StartWorker, unique_id: str
) -> None:
    """Only tools' changes to state are saved; an option that changes it (which used to
    be saved on the first step and silently dropped later) fails at once, saying so."""
    from tests.agents import increment_tool

    reads: list[int] = []
    sneaked: list[int] = []

    def system(ctx: Any) -> str:
        reads.append(ctx.state.count)
        return f"The count is {ctx.state.count}."

    def sneaky(ctx: Any) -> str:
        sneaked.append(ctx.state.count)
        ctx.state.count += 100
        return "You count."

    script = Script(
        name="readonly",
        delay=0,
        turns=[[ScriptStep(text="{system}")]],
    )
    reader = agent("reader", model=script, system=system, state_schema=Counter)
    writer = agent(
        "writer", model=script, system=sneaky, state_schema=Counter, tools=[increment_tool]
    )
    client = await start_worker([reader, writer])

    session = client.agent(reader).session(unique_id)
    assert (await (await session.send("hi")).outcome).status is TurnStatus.FINISHED
    assert (await session.history())[1].text() == "The count is 0."

    bad = client.agent(writer).session(unique_id + "-w")
    outcome = await (await bad.send("hi")).outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "AgentOptionFailed"
    assert "system changed the session state" in (outcome.error or "")
    assert await bad.state() is None or (await bad.state()).count == 0
    # Failed at once: the option ran once, not once per retry.
    assert sneaked == [0] and reads == [0]
