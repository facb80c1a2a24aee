"""A session whose run has ended answers every call at once, and no call spins.

The client (`SessionClient`, `Session`, `TurnHandle`) against the real
`SessionWorkflow` on the time-skipping test server, activities faked by name (the
fast harness of `test_workflow_logic`), with every Temporal call the client makes
counted (`RpcCounter`): a call on a closed, failed, terminated or timed-out
session raises `SessionClosed` or `SessionFailed` within a second after one
try, and a wait that meets a run handing over to the next asks again after a growing
pause, not hundreds of times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio import activity, workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sessionflow.client.backoff import Backoff
from sessionflow.client.client import SessionClient
from sessionflow.client.session import Session as ClientSession
from sessionflow.config import agent_task_queue
from sessionflow.contract import (
    WORKFLOW_NAME,
    ActivityName,
    ExecRequest,
    ExecResult,
    SandboxExecParams,
    SandboxStatus,
    SessionInput,
    SessionLimits,
    SessionStatus,
    TurnStatus,
)
from sessionflow.errors import (
    SessionClosed,
    SessionContinuing,
    SessionEnded,
    SessionFailed,
    SessionNotFound,
)
from sessionflow.ids import parse_session_workflow_id
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow
from tests.rpc_counts import RpcCounter
from tests.workflow_fakes import (
    AGENT,
    HEARTBEAT_THROTTLE,
    PATIENCE,
    Fakes,
    Gate,
    bash,
    text_step,
    tool_step,
)
from tests.workflow_harness import Harness, Session, eventually, send_request

# What "at once" means for a call on an ended session (real time).
AT_ONCE = 1.0


class GatedFakes(Fakes):
    """The scripted activities, with a `sandbox.exec` that runs until released."""

    def __init__(self) -> None:
        super().__init__()
        self.exec_gate: asyncio.Event | None = None

    def activities(self) -> list[Callable[..., Any]]:
        return [self.gated_exec if a == self.sandbox_exec else a for a in super().activities()]

    @activity.defn(name=ActivityName.SANDBOX_EXEC.value)
    async def gated_exec(self, params: SandboxExecParams) -> ExecResult:
        await self._record(self.exec_calls, params)
        while self.exec_gate is not None and not self.exec_gate.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.02)
        return ExecResult(exit_code=0, stdout="done", stderr="")


@workflow.defn(name="EndsTestFailingRun", sandboxed=False)
class FailingRun:
    """A run that fails with an application error, under a session's workflow id: the
    one way to a FAILED run that a test can count on (the session workflow itself
    turns activity failures into failed turns, not a failed run)."""

    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("the disk is on fire", type="DiskOnFire", non_retryable=True)


@workflow.defn(name="EndsTestHandingOver", sandboxed=False)
class HandingOverRun:
    """A run that refuses `wait_turn` with `SessionContinuing` until told the hand-over
    is done (signal `handed_over`), then answers it: the workflow's behaviour while it
    continues as new, as seen by a client."""

    def __init__(self) -> None:
        self.handed_over = False
        self.refused = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="handed_over")
    def finish_hand_over(self) -> None:
        self.handed_over = True

    @workflow.update(name="wait_turn")
    def wait_turn(self, message_id: str) -> dict[str, str]:
        return {"message_id": message_id, "status": TurnStatus.FINISHED.value}

    @wait_turn.validator
    def _refuse_while_continuing(self, message_id: str) -> None:
        if not self.handed_over:
            raise ApplicationError("the run is continuing as new", type="SessionContinuing")


@dataclass
class Ends:
    harness: Harness
    client: SessionClient
    counts: RpcCounter

    def session(self, raw: Session) -> ClientSession:
        """The client's handle on a session the harness started."""
        _, session_id = parse_session_workflow_id(raw.workflow_id)
        return self.client.agent(AGENT).session(session_id)

    async def started(self, text: str, **options: Any) -> tuple[Session, ClientSession, str]:
        """A session whose first turn has finished."""
        raw, first = await self.harness.start(text, **options)
        assert (await raw.wait(first)).status is TurnStatus.FINISHED
        return raw, self.session(raw), first

    async def start_other(self, workflow: str) -> ClientSession:
        """A run of a test workflow under a session's workflow id."""
        session = self.client.agent(AGENT).session(f"s-{uuid.uuid4().hex[:10]}")
        await self.harness.env.client.start_workflow(
            workflow, id=session.workflow_id, task_queue=self.harness.task_queue
        )
        self.harness.sessions.append(Session(self.harness.env.client, session.workflow_id))
        return session


@pytest.fixture
async def ends(workflow_env: WorkflowEnvironment) -> AsyncIterator[Ends]:
    env = workflow_env
    fakes = GatedFakes()
    base = f"ends-{uuid.uuid4().hex[:12]}"
    # The agent's own queue, where the client looks for the worker that serves it.
    task_queue = agent_task_queue(base, AGENT)
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SessionWorkflow, FailingRun, HandingOverRun],
        activities=fakes.activities(),
        workflow_runner=_WORKFLOW_RUNNER,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )
    counts = RpcCounter()
    # Never connected: none of the calls tested here reaches Redis.
    redis = Redis(host="127.0.0.1", port=1)
    client = SessionClient(counts.client(env.client), redis, task_queue=base)
    async with worker:
        harness = Harness(env, fakes, task_queue)
        yield Ends(harness, client, counts)
        # Stop what still runs, so no timer of it fires when a later test skips time.
        for raw in harness.sessions:
            with contextlib.suppress(RPCError):
                await raw.handle().terminate(reason="test over")
    await redis.aclose()


async def at_once(
    ends: Ends, call: Awaitable[Any], error: type[SessionEnded], update: str | None = None
) -> SessionEnded:
    """Run `call`; it raises `error` within `AT_ONCE` s after one try of `update`."""
    before = ends.counts.updates(update) if update else 0
    began = time.monotonic()
    with pytest.raises(error) as raised:
        await asyncio.wait_for(call, PATIENCE)
    took = time.monotonic() - began
    assert took < AT_ONCE, f"{call!r} took {took:.2f} s"
    if update is not None:
        assert ends.counts.updates(update) - before == 1
    return raised.value


# -- a closed session ---------------------------------------------------------------------


async def test_every_write_to_a_closed_session_raises_session_closed_at_once(
    ends: Ends,
) -> None:
    fakes = ends.harness.fakes
    fakes.steps = [tool_step(bash("ls")), text_step("Two files.")]
    _, session, first = await ends.started("list the files")
    history = await session.history()
    await session.close()
    assert fakes.killed == ["sb-1"]

    error = await at_once(ends, session.close(), SessionClosed, "close")
    assert "is closed" in str(error) and session.id in str(error)
    await at_once(
        ends, session.approve({"approval_id": "ap-1", "approved": True}), SessionClosed, "approve"
    )
    await at_once(ends, session.answer(first).outcome, SessionClosed, "wait_turn")
    await at_once(ends, session.answer(first).done, SessionClosed, "wait_turn")
    signals = ends.counts.counts["signal:interrupt"]
    await at_once(ends, session.interrupt(), SessionClosed)
    assert ends.counts.counts["signal:interrupt"] - signals == 1
    # Calls that would start a session that never ran do not reopen an ended one.
    await at_once(ends, session.update(last_message_id=history[0].id), SessionClosed)
    await at_once(ends, session.update(sandbox_id="sb-1"), SessionClosed)
    await at_once(ends, session.sandbox.exec("ls"), SessionClosed)
    assert ends.counts.updates("update") == ends.counts.updates("sandbox_exec") == 0
    assert len(fakes.exec_calls) == 0

    # Reads of the closed run still answer, from Temporal's copy of it.
    assert await session.history() == history
    assert (await session.info()).message_count == 2
    assert (await session.usage()).total.total_tokens > 0
    # The close killed its sandbox.
    assert await session.sandbox.get_status() is SandboxStatus.STOPPED
    assert await session.exists()


async def test_a_session_closed_without_a_sandbox_reports_none(ends: Ends) -> None:
    ends.harness.fakes.steps = [text_step("Hi.")]
    _, session, _ = await ends.started("hello")
    await session.close()
    assert await session.sandbox.get_status() is None


# -- runs that did not complete -----------------------------------------------------------


async def test_a_terminated_session_raises_session_failed_naming_the_reason(
    ends: Ends,
) -> None:
    ends.harness.fakes.steps = [text_step("Hi.")]
    raw, session, first = await ends.started("hello")
    await raw.handle().terminate(reason="runaway costs")

    for call, update in [
        (session.close(), "close"),
        (session.approve({"approval_id": "ap-1", "approved": False}), "approve"),
        (session.answer(first).outcome, "wait_turn"),
    ]:
        error = await at_once(ends, call, SessionFailed, update)
        assert "terminated: runaway costs" in str(error)
    await at_once(ends, session.interrupt(), SessionFailed)
    await at_once(ends, session.sandbox.exec("ls"), SessionFailed)
    await at_once(ends, session.sandbox.get_status(), SessionFailed, "sandbox_status")
    # Its history is still there to read.
    assert [m.text() for m in await session.history()] == ["hello", "Hi."]


async def test_a_failed_run_raises_session_failed_with_its_message(ends: Ends) -> None:
    session = await ends.start_other("EndsTestFailingRun")
    await eventually_ended(ends, session)

    for call, update in [
        (session.close(), "close"),
        (session.approve({"approval_id": "ap-1", "approved": True}), "approve"),
        (session.answer("msg-1").outcome, "wait_turn"),
    ]:
        error = await at_once(ends, call, SessionFailed, update)
        assert "failed: DiskOnFire: the disk is on fire" in str(error)


# A cancel request is an interrupt, not an end: tests/test_ops_console.py (the time-skipping
# test server cannot continue a run as new once it was asked to cancel).


async def test_a_timed_out_session_raises_session_failed(ends: Ends) -> None:
    env = ends.harness.env
    session = ends.client.agent(AGENT).session(f"s-{uuid.uuid4().hex[:10]}")
    request = send_request("hello")
    ends.harness.fakes.steps = [text_step("Hi.")]
    await env.client.start_workflow(
        WORKFLOW_NAME,
        SessionInput(session_id=session.id, agent=AGENT, limits=SessionLimits()),
        id=session.workflow_id,
        task_queue=ends.harness.task_queue,
        start_signal="send",
        start_signal_args=[request],
        run_timeout=timedelta(minutes=5),
    )
    ends.harness.sessions.append(Session(env.client, session.workflow_id))
    await env.sleep(301)
    await eventually_ended(ends, session)

    error = await at_once(ends, session.close(), SessionFailed, "close")
    assert "timed out" in str(error)


async def test_a_session_that_never_ran_is_not_found(ends: Ends) -> None:
    session = ends.client.agent(AGENT).session(f"s-{uuid.uuid4().hex[:10]}")
    for call in (session.close(), session.answer("msg-1").outcome, session.interrupt()):
        with pytest.raises(SessionNotFound):
            await asyncio.wait_for(call, AT_ONCE)


async def until_asked(ends: Ends, update: str, times: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while ends.counts.updates(update) < times:
        assert time.monotonic() < deadline, f"{update} was not asked {times} time(s)"
        await asyncio.sleep(0.01)


async def eventually_ended(ends: Ends, session: ClientSession) -> None:
    handle = ends.harness.env.client.get_workflow_handle(session.workflow_id)
    deadline = time.monotonic() + PATIENCE
    while (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, "the run did not end"
        await asyncio.sleep(0.02)


# -- a run handing over to the next -------------------------------------------------------


async def test_a_wait_refused_while_the_run_hands_over_backs_off(ends: Ends) -> None:
    session = await ends.start_other("EndsTestHandingOver")
    waiting = asyncio.ensure_future(session.answer("msg-1").outcome)
    await asyncio.sleep(3.0)
    refused = ends.counts.updates("wait_turn")
    # Pauses of 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s, then 1-2 s: at most
    # seven asks in 3 s (a loop without pauses asked hundreds of times).
    assert 3 <= refused <= 7
    assert not waiting.done()

    await ends.harness.env.client.get_workflow_handle(session.workflow_id).signal("handed_over")
    outcome = await asyncio.wait_for(waiting, PATIENCE)
    assert outcome.status is TurnStatus.FINISHED
    assert ends.counts.updates("wait_turn") <= refused + 1


async def test_a_wait_answered_none_while_continuing_as_new_backs_off(ends: Ends) -> None:
    fakes = ends.harness.fakes
    second_step = Gate(result=text_step("two"))
    fakes.steps = [text_step("one"), second_step, text_step("three")]
    # Every turn passes the bound: each turn ends by continuing as new, which first
    # waits for the handlers in flight, here a long `sandbox.exec`.
    limits = SessionLimits(continue_as_new_after_events=1)
    raw, session, _ = await ends.started("1", limits=limits)
    fakes.exec_gate = asyncio.Event()
    exec_call = asyncio.ensure_future(
        raw.handle().execute_update(
            "sandbox_exec", ExecRequest(command="sleep 600"), result_type=ExecResult
        )
    )
    await fakes.until(lambda: len(fakes.exec_calls) == 1, "the long exec to start")
    await raw.send("2")
    await asyncio.wait_for(second_step.started.wait(), PATIENCE)
    third = await raw.send("3")  # queued: it is carried to the next run
    waiting = asyncio.ensure_future(session.answer(third).outcome)
    await until_asked(ends, "wait_turn", 1)

    # The second turn ends and the run hands over, waiting for the exec meanwhile:
    # it answers the wait with None, and the client asks again, after pauses.
    second_step.release.set()
    await eventually(raw.info, lambda i: i.status is SessionStatus.IDLE, "the second turn to end")
    before = ends.counts.updates("wait_turn")
    await asyncio.sleep(3.0)
    asked = ends.counts.updates("wait_turn") - before
    assert 2 <= asked <= 7, asked
    assert not waiting.done()

    fakes.exec_gate.set()
    assert (await asyncio.wait_for(exec_call, PATIENCE)).stdout == "done"
    outcome = await asyncio.wait_for(waiting, PATIENCE)
    assert outcome.status is TurnStatus.FINISHED
    assert [m.text() for m in await session.history()][-2:] == ["3", "three"]


def test_session_continuing_is_an_internal_retryable_error() -> None:
    assert SessionContinuing.retryable
    assert (SessionContinuing.http_status, SessionContinuing.code) == (503, "session_continuing")
    assert (SessionClosed.http_status, SessionClosed.code) == (409, "session_closed")
    assert (SessionFailed.http_status, SessionFailed.code) == (409, "session_failed")
    assert not SessionClosed.retryable and not SessionFailed.retryable


def test_backoff_doubles_to_its_ceiling_with_jitter_and_restarts_after_a_long_attempt() -> None:
    backoff = Backoff(first=0.1, last=2.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    steps = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True)), delays
    assert len({round(d, 6) for d in delays[-3:]}) == 3  # jittered, not in step
    backoff.reset()
    assert backoff.next_delay() <= 0.1
