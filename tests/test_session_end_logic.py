"""How a session ends, on the fast harness (`tests.test_workflow_logic`): the real
`SessionWorkflow` on the time-skipping test server, activities faked by name.

An idle session closes itself after its TTL exactly as `close` does (its sandbox
killed, its stream ended, the run completed), with one idle timer per idle period
rather than one per turn; `delete` stops whatever runs, kills the sandbox and erases
the session; a run started only to erase a session whose run had ended does that.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus

from sessionflow.contract import (
    WORKFLOW_NAME,
    EraseOrder,
    SessionEnd,
    SessionInput,
    SessionLimits,
    TurnStatus,
)
from sessionflow.ids import session_workflow_id
from tests.workflow_fakes import AGENT, PATIENCE, Gate, bash, text_step, tool_step
from tests.workflow_harness import Harness, Session, eventually, timer_started


def timers(events: list[HistoryEvent]) -> int:
    return sum(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events)


async def status(session: Session) -> WorkflowExecutionStatus | None:
    return (await session.handle().describe()).status


async def test_a_session_idle_past_its_ttl_closes_and_its_sandbox_is_killed(
    harness: Harness,
) -> None:
    fakes, env = harness.fakes, harness.env
    fakes.steps = [tool_step(bash("touch x")), text_step("Done.")]
    limits = SessionLimits(pause_sandbox_after_seconds=60, close_after_idle_seconds=3600)

    session, reply_id = await harness.start("make a file", limits=limits)
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED
    await eventually(session.history, timer_started, "the idle timer")
    await env.sleep(61)
    await fakes.until(lambda: fakes.paused == ["sb-1"], "the sandbox to be paused")
    assert fakes.killed == []

    await env.sleep(3600)
    await asyncio.wait_for(session.handle().result(), PATIENCE)

    assert await status(session) is WorkflowExecutionStatus.COMPLETED
    assert fakes.killed == ["sb-1"]
    [ended] = fakes.ended
    assert (ended.workflow_id, ended.reason) == (session.workflow_id, SessionEnd.EXPIRED)
    # A pause timer, then the TTL's: one each for the idle period.
    assert timers(await session.history()) == 2


async def test_a_message_before_the_ttl_keeps_the_session_open(harness: Harness) -> None:
    fakes, env = harness.fakes, harness.env
    fakes.steps = [text_step(f"answer {i}") for i in range(6)]
    limits = SessionLimits(close_after_idle_seconds=100)

    session, first = await harness.start("hello", limits=limits)
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    await eventually(session.history, timer_started, "the idle timer")
    await env.sleep(60)
    # Turns within the idle period: none of them starts a timer of its own.
    for i in range(4):
        reply = await session.send(f"message {i}")
        assert (await session.wait(reply)).status is TurnStatus.FINISHED
    assert timers(await session.history()) == 1

    await env.sleep(60)  # 120 s since the session started, 60 since its last message
    assert await status(session) is WorkflowExecutionStatus.RUNNING
    assert (fakes.killed, fakes.ended) == ([], [])
    # The first timer fired early: one more for the rest of the period, then it ends.
    await env.sleep(50)
    await asyncio.wait_for(session.handle().result(), PATIENCE)
    assert [e.reason for e in fakes.ended] == [SessionEnd.EXPIRED]
    assert timers(await session.history()) == 2


async def test_without_a_ttl_an_idle_session_stays(harness: Harness) -> None:
    fakes, env = harness.fakes, harness.env
    fakes.steps = [tool_step(bash("touch x")), text_step("Done."), text_step("Still here.")]
    limits = SessionLimits(pause_sandbox_after_seconds=60, close_after_idle_seconds=None)

    session, first = await harness.start("make a file", limits=limits)
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    await eventually(session.history, timer_started, "the idle timer")
    await env.sleep(90 * 24 * 3600)

    assert await status(session) is WorkflowExecutionStatus.RUNNING
    assert (fakes.paused, fakes.killed, fakes.ended) == (["sb-1"], [], [])
    reply = await session.send("are you there?")
    assert (await session.wait(reply)).status is TurnStatus.FINISHED


async def test_close_kills_the_sandbox_then_ends_the_stream(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("touch x")), text_step("Done.")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED

    await session.handle().execute_update("close", None)
    await asyncio.wait_for(session.handle().result(), PATIENCE)

    assert fakes.killed == ["sb-1"]
    assert [(e.workflow_id, e.reason) for e in fakes.ended] == [
        (session.workflow_id, SessionEnd.CLOSED)
    ]
    assert fakes.erased == []


async def test_delete_stops_the_turn_drops_the_queue_kills_and_erases(harness: Harness) -> None:
    fakes = harness.fakes
    gate = Gate(partial=text_step("half an ans"))
    fakes.steps = [tool_step(bash("touch x")), text_step("Done."), gate, text_step("never")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    running = await session.send("tell me a long story")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    queued = await session.send("and another")

    waiting = asyncio.create_task(session.wait(running))
    await session.handle().execute_update("delete", None)
    await asyncio.wait_for(session.handle().result(), PATIENCE)

    assert gate.cancelled.is_set()
    assert (await waiting).status is TurnStatus.INTERRUPTED
    assert len(fakes.model_calls) == 3  # the queued message was dropped, never answered
    assert fakes.killed == ["sb-1"]
    [erased] = fakes.erased
    assert erased.workflow_id == session.workflow_id
    assert fakes.ended == []  # erasing ends the stream itself
    assert queued  # sent, and dropped with the session


async def test_an_erase_run_kills_the_ended_sessions_sandbox_and_erases_it(
    harness: Harness,
) -> None:
    session_id = f"s-{uuid.uuid4().hex[:10]}"
    workflow_id = session_workflow_id(AGENT, session_id)
    handle = await harness.env.client.start_workflow(
        WORKFLOW_NAME,
        SessionInput(session_id=session_id, agent=AGENT, erase=EraseOrder(sandbox_id="sb-9")),
        id=workflow_id,
        task_queue=harness.task_queue,
    )
    await asyncio.wait_for(handle.result(), PATIENCE)

    assert harness.fakes.killed == ["sb-9"]
    assert [e.workflow_id for e in harness.fakes.erased] == [workflow_id]
    assert harness.fakes.model_calls == []
