"""The Temporal dev server SIGKILLed mid-turn and restarted on the same SQLite file:
the session resumes, each step and command once, and the clients made before carry on.

Killing the session-wide test stack's Temporal would disturb every other test, so this
test runs a stack of its own (Temporal and Redis) on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import TurnOutcome, TurnStatus
from sessionflow.messages import MessageStatus, StepStartPart, ToolState
from sessionflow.streams.assemble import assemble
from sessionflow.streams.reader import StreamEvent
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import SLOW_SCRIPT, slow_agent
from tests.history import completed_activities, scheduled_activities, workflow_events

pytestmark = pytest.mark.slow

# Longer than the SDK's retry budget for one call, and than the 5 s heartbeat timeout
# of the step in flight, whose completion cannot reach the server meanwhile.
OUTAGE_SECONDS = 12

EXPECTED_TEXT = "".join(s.text.replace("{last_tool_output}", "1 2 3") for s in SLOW_SCRIPT.turns[0])


@contextlib.asynccontextmanager
async def running_worker(
    temporal: Client, redis: Redis, task_queue: str, sandbox_root: Path
) -> AsyncIterator[None]:
    """An in-process worker serving slow_agent; it shares the test's Temporal client."""
    worker = build_worker(
        temporal,
        redis,
        [slow_agent],
        WorkerOptions(task_queue=task_queue, sandbox_root=sandbox_root),
    )
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        try:
            await asyncio.wait_for(worker.shutdown(), timeout=20)
            await asyncio.wait_for(task, timeout=5)
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def test_temporal_killed_and_restarted_mid_turn_the_session_resumes(
    tmp_path: Path, task_queue: str, sandbox_root: Path, unique_id: str
) -> None:
    async with LocalStack(StackConfig.on_free_ports(tmp_path / "stack")) as stack:
        # Made before the kill and used throughout: the SDK reconnects by itself.
        temporal = await connect_temporal(stack.config.temporal_address)
        redis = await connect_redis(stack.config.redis_url)
        background: list[asyncio.Task[Any]] = []
        try:
            async with running_worker(temporal, redis, task_queue, sandbox_root):
                client = SessionClient(temporal, redis, task_queue=task_queue)
                session = client.agent("slow").session(unique_id)
                result = await asyncio.wait_for(session.send("go"), timeout=10)
                events: list[StreamEvent] = []
                streaming = asyncio.Event()

                async def read() -> None:
                    # The live reader needs only Redis: it reads straight through the outage.
                    async for event in result.stream():
                        events.append(event)
                        if event.step == 1 and event.type == "text-delta":
                            streaming.set()

                async def wait_done() -> TurnOutcome:
                    # Awaited across the outage, which outlasts the SDK's own retries of
                    # the update call (~10 s): `done` itself waits for the server.
                    return await result.outcome

                reader = asyncio.create_task(read())
                done = asyncio.create_task(wait_done())
                background += [reader, done]

                # Kill Temporal while the second model step streams: one step and one
                # tool are recorded, one step is in flight on the worker.
                await asyncio.wait_for(streaming.wait(), timeout=20)
                stack.kill("temporal")
                await asyncio.sleep(OUTAGE_SECONDS)
                stack.restart("temporal")
                await stack.wait_ready("temporal", timeout=30)

                outcome = await asyncio.wait_for(done, timeout=30)
                await asyncio.wait_for(reader, timeout=10)
                history = await asyncio.wait_for(session.history(), timeout=10)
                in_history = await asyncio.wait_for(
                    workflow_events(temporal, session.workflow_id), timeout=10
                )
                (runs,) = sandbox_root.glob("*/runs.txt")
                runs_after_first_turn = runs.read_text()

                # The session goes on: a second turn (the script starts over) completes.
                second = await asyncio.wait_for(session.send("again"), timeout=10)
                second_outcome = await asyncio.wait_for(second.outcome, timeout=30)
                final_history = await asyncio.wait_for(session.history(), timeout=10)
        finally:
            for task in background:
                task.cancel()
            await redis.aclose()

    assert outcome.status is TurnStatus.FINISHED
    assert outcome.message_id == result.assistant_message_id
    assert len(history) == 2
    reply = history[1]
    assert reply.status is MessageStatus.COMPLETE
    assert reply.text() == EXPECTED_TEXT
    assert sum(isinstance(p, StepStartPart) for p in reply.parts) == 3
    tools = reply.tool_parts()
    assert [t.state for t in tools] == [ToolState.OUTPUT_AVAILABLE] * 2
    assert [t.output["stdout"] for t in tools] == ["step-one\n", "1 2 3\n"]
    assert runs_after_first_turn == "ran\n", "the command that ran before the kill ran again"

    # Temporal history: three model steps and two tools, each scheduled and completed
    # once. (Whether the in-flight step needed a second attempt depends on whether its
    # completion reached the restarted server before its heartbeat timeout; either way
    # history and stream agree.)
    scheduled = scheduled_activities(in_history)
    assert scheduled.count("sessionflow.model_step") == 3
    assert scheduled.count("sessionflow.run_tool") == 2
    assert completed_activities(in_history) == len(scheduled)

    # What the live reader saw, retries applied, is exactly the message in history.
    assert [e.type for e in events].count("finish") == 1
    assert events[-1].type == "finish"
    assert assemble(events) == reply

    assert second_outcome.status is TurnStatus.FINISHED
    assert len(final_history) == 4
    assert final_history[:2] == history
    assert final_history[3].status is MessageStatus.COMPLETE
    assert final_history[3].text() == EXPECTED_TEXT
    assert runs.read_text() == "ran\nran\n"
