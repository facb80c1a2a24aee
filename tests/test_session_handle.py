"""The session handle's smaller verbs: input forms, paging, update, sandbox, errors, and
what each does once the session has ended."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.errors import (
    MessageNotFound,
    SandboxNotFound,
    SessionBusy,
    SessionClosed,
    SessionFailed,
    SessionNotFound,
)
from sessionflow.messages import TextPart
from sessionflow.sandbox.base import SandboxStatus
from tests.agents import streaming_agent, tool_agent
from tests.conftest import StartWorker
from tests.rpc_counts import RpcCounter


async def test_send_accepts_every_input_form(start_worker: StartWorker, unique_id: str) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)

    def text(value: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": value}]

    forms = [
        "plain text",
        {"role": "user", "id": "m-ui", "metadata": {"from": "web"}, "parts": text("ui message")},
        [*text("parts "), *text("list")],
        {"type": "message", "message": {"role": "user", "parts": text("wrapped")}},
    ]
    for form in forms:
        result = await session.send(form)
        assert (await result.outcome).status is TurnStatus.FINISHED
    users = (await session.history())[0::2]
    assert [m.text() for m in users] == ["plain text", "ui message", "parts list", "wrapped"]
    assert users[1].id == "m-ui" and users[1].metadata == {"from": "web"}


async def test_history_pages_and_rewinds(start_worker: StartWorker, unique_id: str) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    for text in ("one", "two", "three"):
        await (await session.send(text)).done
    everything = await session.history()
    assert len(everything) == 6
    assert await session.history(offset=2, limit=2) == everything[2:4]
    assert await session.history(offset=6) == []

    await session.update(last_message_id=everything[3].id)
    assert await session.history() == everything[:4]
    with pytest.raises(MessageNotFound):
        await session.update(last_message_id="msg_nope")
    # The next turn continues from the rewound conversation.
    await (await session.send("four")).done
    history = await session.history()
    assert [m.parts[0] for m in history[4:5]] == [TextPart(text="four")]


async def test_rewinding_a_busy_session_is_refused(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    result = await session.send("long")
    async for event in result.stream():
        if event.type == "text-delta":
            break
    with pytest.raises(SessionBusy):
        await session.update(last_message_id=(await session.history())[0].id)
    await session.interrupt()
    await result.done


async def test_the_sandbox_handle_creates_runs_and_switches_sandboxes(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    assert await session.sandbox.get_id() is None
    assert await session.sandbox.get_status() is None

    result = await session.sandbox.exec("printf", args=["%s|", "a b", "it's"], timeout=10)
    assert (result.exit_code, result.stdout) == (0, "a b|it's|")
    first_id = await session.sandbox.get_id()
    assert first_id is not None
    assert await session.sandbox.get_status() is SandboxStatus.RUNNING
    failing = await session.sandbox.exec("exit 7")
    assert failing.exit_code == 7

    other = client.agent("tooling").session(unique_id + "-other")
    await other.sandbox.exec("echo from-other > marker.txt")
    other_id = await other.sandbox.get_id()
    assert other_id not in (None, first_id)

    await session.update(sandbox_id=other_id)
    assert await session.sandbox.get_id() == other_id
    assert (await session.sandbox.exec("cat marker.txt")).stdout == "from-other\n"
    with pytest.raises(SandboxNotFound):
        await session.update(sandbox_id="sbx-missing")
    assert await session.sandbox.get_id() == other_id

    # send(sandbox_id=...) moves the session before the turn's tools run.
    third = client.agent("tooling").session(unique_id + "-third")
    done = await (await third.send("go", sandbox_id=first_id)).outcome
    assert done.status is TurnStatus.FINISHED
    assert await third.sandbox.get_id() == first_id


async def test_unknown_sessions_raise_session_not_found(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    for call in (session.history(), session.info(), session.usage(), session.interrupt()):
        with pytest.raises(SessionNotFound, match=unique_id):
            await call


async def test_a_closed_session_refuses_writes_at_once_and_still_reads(
    start_worker: StartWorker, temporal: Client, redis: Redis, unique_id: str
) -> None:
    # On the real Temporal server (the fast harness's test server answers a closed
    # run's updates in its own words): every Temporal call of this client is counted.
    worker_client = await start_worker([tool_agent])
    counts = RpcCounter()
    client = SessionClient(counts.client(temporal), redis, task_queue=worker_client.task_queue)
    session = client.agent("tooling").session(unique_id)
    first = await session.send("plain text")
    assert (await first.outcome).status is TurnStatus.FINISHED
    history = await session.history()
    await session.close()

    calls = [
        (session.close(), "close"),
        (session.approve({"approval_id": "approval-x", "approved": True}), "approve"),
        (first.outcome, "wait_turn"),
        (session.sandbox.exec("ls"), None),
        (session.update(last_message_id=history[0].id), None),
        (session.interrupt(), None),
    ]
    for call, update in calls:
        before = counts.updates(update) if update else 0
        began = time.monotonic()
        with pytest.raises(SessionClosed, match=unique_id):
            await asyncio.wait_for(call, 10)
        assert time.monotonic() - began < 1.0, update
        if update is not None:
            assert counts.updates(update) - before == 1
    assert counts.updates("sandbox_exec") == counts.updates("update") == 0
    assert counts.counts["signal:interrupt"] == 1

    # Reads answer from the closed run; a send opens a new, empty session.
    assert await session.history() == history
    assert (await session.info()).message_count == 2
    again = await session.send("plain text")
    assert (await again.outcome).status is TurnStatus.FINISHED
    assert len(await session.history()) == 2


async def test_a_terminated_session_raises_session_failed_with_the_reason(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    first = await session.send("plain text")
    assert (await first.outcome).status is TurnStatus.FINISHED
    await client.temporal.get_workflow_handle(session.workflow_id).terminate(reason="ops: stop")

    for call in (session.close(), first.outcome, session.sandbox.exec("ls")):
        with pytest.raises(SessionFailed, match="terminated: ops: stop"):
            await asyncio.wait_for(call, 1.0)
    assert (await session.history())[0].text() == "plain text"
