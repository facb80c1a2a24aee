"""Interrupts announced through Redis: running steps heartbeat every 2 s instead of
0.4 s (a fifth of the Temporal server's heartbeat writes), and an interrupt is still
announced to them, from the client or straight from Temporal alike (the workflow
announces it), and stops them. How fast is a benchmark's to say, not a test's (a
loaded CI machine is not a measure): `python -m bench.interrupt_latency`."""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from sessionflow.activities.heartbeat import SLOW_INTERVAL
from sessionflow.cli.localstack import free_port
from sessionflow.client.session import SendResult, Session
from sessionflow.contract import ActivityName, TurnStatus
from sessionflow.streams.interrupts import InterruptWatch, announce_interrupt
from sessionflow.workflows.session import SessionWorkflow
from tests.agents import sleeper_agent
from tests.conftest import StartWorker


async def sleeping(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path, **options: object
) -> tuple[Session, SendResult, WorkflowHandle[Any, Any]]:
    """A sleeper session whose tool call (`sleep 1000`) is running."""
    client = await start_worker([sleeper_agent], **options)
    session = client.agent("sleeper").session(unique_id)
    result = await session.send("sleep")
    while not list(sandbox_root.glob("*/shell.pid")):
        await asyncio.sleep(0.02)
    return session, result, client.temporal.get_workflow_handle(session.workflow_id)


async def heartbeats_seen(handle: WorkflowHandle[Any, Any], seconds: float) -> int:
    """How many heartbeats the server recorded for the workflow's running activity in
    `seconds` (distinct last-heartbeat times, sampled every 50 ms)."""
    seen: set[object] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if pending.HasField("last_heartbeat_time"):
                seen.add(pending.last_heartbeat_time.ToNanoseconds())
        await asyncio.sleep(0.05)
    return len(seen)


_STEP_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
}


async def announced_and_stopped(handle: WorkflowHandle[Any, Any]) -> None:
    """The last interrupt was announced (the workflow's `announce_interrupt` local
    activity, a marker in its history) before the step it stopped ended; a slow stop
    is shown as a warning with the run's timeline, so a loaded run says where its time
    went."""
    events = [e async for e in handle.fetch_history_events()]
    signalled = max(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    stopped = next(i for i, e in enumerate(events) if i > signalled and e.event_type in _STEP_ENDS)
    timeline = "\n".join(
        f"{e.event_time.ToDatetime():%H:%M:%S.%f} {EventType.Name(e.event_type)}" for e in events
    )
    markers = [
        e.marker_recorded_event_attributes
        for e in events[signalled:stopped]
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert any(
        ActivityName.ANNOUNCE_INTERRUPT.value.encode() in m.SerializeToString() for m in markers
    ), timeline
    took = (
        events[stopped].event_time.ToNanoseconds() - events[signalled].event_time.ToNanoseconds()
    ) / 1e9
    if took > 1.0:
        warnings.warn(
            f"the step stopped {took:.1f} s after the interrupt:\n{timeline}", stacklevel=2
        )


async def test_a_running_step_heartbeats_slowly_and_an_interrupt_still_lands_at_once(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    session, result, handle = await sleeping(start_worker, unique_id, sandbox_root)
    beats = await heartbeats_seen(handle, 3 * SLOW_INTERVAL.total_seconds())
    # Every 2 s: three or four in 6 s (at 0.4 s it was fifteen).
    assert 2 <= beats <= 5, beats

    await session.interrupt()
    outcome = await result.outcome
    assert outcome.status is TurnStatus.INTERRUPTED
    await announced_and_stopped(handle)


async def test_with_notices_off_steps_heartbeat_every_0_4_s(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    session, result, handle = await sleeping(
        start_worker, unique_id, sandbox_root, interrupt_notices=False
    )
    beats = await heartbeats_seen(handle, 2.0)
    assert beats >= 4, beats  # five at 0.4 s; one at 2 s
    await session.interrupt()
    assert (await result.outcome).status is TurnStatus.INTERRUPTED


async def test_an_interrupt_signalled_straight_to_temporal_lands_as_fast(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    """One path whoever interrupts: a signal sent as the Temporal UI or another SDK
    would (no Sessionflow client, no Redis) reaches the step as soon as the client's."""
    _, result, handle = await sleeping(start_worker, unique_id, sandbox_root)
    await handle.signal(SessionWorkflow.interrupt)
    outcome = await result.outcome
    assert outcome.status is TurnStatus.INTERRUPTED
    await announced_and_stopped(handle)


async def test_the_watch_sees_its_sessions_notices_only(redis: Redis, unique_id: str) -> None:
    first, second = f"{unique_id}-a", f"{unique_id}-b"
    watch = InterruptWatch(redis, poll_seconds=0.02)
    async with watch.watching(first) as a, watch.watching(second) as b:
        assert a.readable and b.readable
        await announce_interrupt(redis, first)
        await asyncio.wait_for(a.moved.wait(), 2)
        await asyncio.sleep(0.1)
        assert not b.moved.is_set()
        # Announced before a step starts: not this step's interrupt.
        async with watch.watching(first) as later:
            await asyncio.sleep(0.1)
            assert not later.moved.is_set()


async def test_an_unreadable_counter_makes_steps_heartbeat_fast() -> None:
    nowhere = Redis(port=free_port(), socket_connect_timeout=0.2)
    watch = InterruptWatch(nowhere, poll_seconds=0.02)
    async with watch.watching("wf-a") as watched:
        assert not watched.readable
        await asyncio.sleep(0.1)
        assert not watched.readable
    await nowhere.aclose()
