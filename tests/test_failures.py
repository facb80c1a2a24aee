"""Failures a session survives: flaky models, unknown agents, bad input."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.service import RPCError

from sessionflow.contract import TurnStatus
from sessionflow.errors import InvalidInput, SessionNotFound
from sessionflow.streams.assemble import assemble
from tests.agents import FLAKY_TEXT, flaky_agent, tool_agent
from tests.conftest import StartWorker


async def test_a_flaky_model_step_is_retried_and_the_retry_announced(
    start_worker: StartWorker, unique_id: str
) -> None:
    text = FLAKY_TEXT
    client = await start_worker([flaky_agent])
    session = client.agent("flaky").session(unique_id)
    result = await session.send("hello")
    events = [e async for e in session.stream(message_id=result.assistant_message_id)]
    assert (await result.outcome).status is TurnStatus.FINISHED

    retry = [e for e in events if e.type == "data-retry"]
    assert len(retry) == 1 and retry[0].attempt == 2
    first_attempt = "".join(
        e.chunk.delta  # type: ignore[attr-defined]
        for e in events
        if e.type == "text-delta" and e.attempt == 1
    )
    second_attempt = "".join(
        e.chunk.delta  # type: ignore[attr-defined]
        for e in events
        if e.type == "text-delta" and e.attempt == 2
    )
    assert 0 < len(first_attempt) < len(text)
    assert second_attempt == text
    (reply,) = [m for m in await session.history() if m.role == "assistant"]
    assert reply.text() == text
    # A reader applying the retry ends with what history holds; so does a replay,
    # which leaves the failed attempt out.
    assert assemble(events) == reply
    replay = [e async for e in session.stream(message_id=reply.id)]
    assert {e.attempt for e in replay if e.type == "text-delta"} == {2}
    assert assemble(replay) == reply


async def test_an_agent_no_worker_serves_is_refused_quickly(
    start_worker: StartWorker, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each agent's sessions go to its own task queue, which no worker polls here: the
    # send says so (after a grace period for a worker still starting) and starts nothing.
    from sessionflow.client import calls
    from sessionflow.errors import WorkerUnavailable

    monkeypatch.setattr(calls, "WORKER_GRACE_SECONDS", 1.0)
    client = await start_worker([tool_agent])
    session = client.agent("ghost").session(unique_id)
    for text in ("anyone there?", "still there?"):
        with pytest.raises(WorkerUnavailable, match="no worker serves agent 'ghost'"):
            await asyncio.wait_for(session.send(text), timeout=10)
    with pytest.raises(SessionNotFound):
        await session.history()


@pytest.mark.parametrize(
    "message, complaint",
    [
        ("   ", "empty"),
        ({"role": "assistant", "parts": [{"type": "text", "text": "hi"}]}, "role 'user'"),
        ({"role": "user", "parts": []}, "no parts"),
        ({"role": "user", "parts": [{"type": "image", "url": "x"}]}, "invalid message"),
        ("x" * 300_000, "limit"),
        (42, "cannot send a int"),
    ],
)
async def test_invalid_messages_are_rejected_before_reaching_temporal(
    start_worker: StartWorker, unique_id: str, message: object, complaint: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    with pytest.raises(InvalidInput, match=complaint):
        await session.send(message)  # type: ignore[arg-type]
    with pytest.raises(RPCError, match="not found"):
        await client.temporal.get_workflow_handle(session.workflow_id).describe()


@pytest.mark.parametrize("session_id", ["", "has space", "brace{", "x" * 201])
async def test_invalid_session_ids_are_rejected_without_a_network_call(
    start_worker: StartWorker, session_id: str
) -> None:
    client = await start_worker([tool_agent])
    with pytest.raises(InvalidInput):
        client.agent("tooling").session(session_id)
