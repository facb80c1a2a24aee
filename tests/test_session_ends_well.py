"""Every path of a session's life ends well (issue 24): failures the model-based test
(`tests/test_session_state_machine.py`) found, each written down as the smallest
sequence that shows it, asserting what DESIGN.md's rule 10 promises.

(A turn allowed no step at all cannot be built any more: `SessionLimits` refuses it;
`tests/test_tool_calls_end_well.py` checks that.)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sessionflow.budgets import Budget
from sessionflow.contract import (
    ActivityName,
    SessionLimits,
    SessionStatus,
    SessionUpdate,
    TurnStatus,
)
from sessionflow.messages import ToolState
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow
from tests.workflow_fakes import (
    PATIENCE,
    Fakes,
    Gate,
    Hold,
    bash,
    non_retryable,
    text_step,
    tool_step,
)
from tests.workflow_harness import (
    Harness,
    Session,
    eventually,
    pending_approval,
    update_error_type,
    workflow_task_failures,
)

TASK_ENDED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
}


async def healthy(session: Session) -> None:
    """No workflow task of the session's current run failed."""
    assert workflow_task_failures(await session.history()) == []


async def answered(session: Session, reply_id: str) -> TurnStatus:
    """How the turn answering `reply_id` ended; it must end within PATIENCE."""
    try:
        outcome = await asyncio.wait_for(session.wait(reply_id), PATIENCE)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise AssertionError(f"message {reply_id} was acknowledged but never answered") from None
    return outcome.status


async def test_a_send_during_a_rewind_runs_after_it(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [text_step("one"), text_step("two"), text_step("three")]
    session, first = await harness.start("1")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    second = await session.send("2")
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    [user_1, reply_1, _, _] = await session.messages()

    # Rewind to the first answer, in another sandbox: the sandbox is looked up first.
    hold = Hold()
    fakes.script(ActivityName.ENSURE_SANDBOX, hold)
    rewinding = asyncio.create_task(
        session.update(SessionUpdate(sandbox_id="sb-other", last_message_id=first))
    )
    await asyncio.wait_for(hold.started.wait(), PATIENCE)
    third = await session.send("3")  # arrives while the rewind waits for the sandbox
    hold.release.set()
    await rewinding
    assert (await session.wait(third)).status is TurnStatus.FINISHED

    messages = await session.messages()
    assert [m.text() for m in messages] == ["1", "one", "3", "three"]
    assert [m.id for m in messages[:2]] == [user_1.id, reply_1.id]
    assert messages[3].id == third


async def test_a_failed_close_leaves_the_session_answering(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("touch x")), text_step("Done."), text_step("Still here.")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    fakes.script(ActivityName.SANDBOX_KILL, non_retryable("SandboxBackendError", "kill failed"))

    with pytest.raises(WorkflowUpdateFailedError):
        await session.close()

    reply_id = await session.send("are you there?")
    assert await answered(session, reply_id) is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Still here."


async def test_a_failed_idle_pause_leaves_the_session_answering(harness: Harness) -> None:
    fakes, env = harness.fakes, harness.env
    fakes.steps = [tool_step(bash("touch x")), text_step("Done."), text_step("Still here.")]
    limits = SessionLimits(pause_sandbox_after_seconds=60)
    session, first = await harness.start("make a file", limits=limits)
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    fakes.script(ActivityName.SANDBOX_PAUSE, non_retryable("SandboxBackendError", "pause failed"))

    # Skipping past the idle timer: the pause is tried, and fails.
    with contextlib.suppress(TimeoutError):  # a run that fails mid-task stops the clock
        await asyncio.wait_for(env.sleep(61), 3.0)
    await fakes.until(lambda: bool(fakes.paused), "the pause to be tried")
    status = (await session.handle().describe()).status
    assert status is WorkflowExecutionStatus.RUNNING, f"the session's run ended {status.name}"

    reply_id = await session.send("are you there?")
    assert await answered(session, reply_id) is TurnStatus.FINISHED
    assert (await session.info()).status is SessionStatus.IDLE


async def test_an_approval_acknowledged_as_the_turn_is_interrupted_is_recorded(
    workflow_env: WorkflowEnvironment,
) -> None:
    """The interrupt and the approval reach the session in one workflow task: the
    approval is accepted (it is still pending when its validator runs), and the turn,
    stopping, must record the decision rather than drop it. To put both in one task
    every time, no worker runs while they are sent; one starts once both wait."""
    fakes = Fakes()
    fakes.steps = [tool_step(bash("make deploy"), needs_approval=[True])]
    task_queue = f"race-{uuid.uuid4().hex[:12]}"

    def worker() -> Worker:
        return Worker(
            workflow_env.client,
            task_queue=task_queue,
            workflows=[SessionWorkflow],
            activities=fakes.activities(),
            workflow_runner=_WORKFLOW_RUNNER,
            max_cached_workflows=0,  # no sticky queue: the next task goes to any worker
        )

    harness = Harness(workflow_env, fakes, task_queue)
    async with worker():
        # The first worker's last poll may still take the next task, which then times
        # out to the second: after 2 s, not the default 10 s.
        session, reply_id = await harness.start("deploy", task_timeout=timedelta(seconds=2))
        approval_id = await pending_approval(session)
    try:
        await session.interrupt()  # the server holds it for the next workflow task
        approving = asyncio.create_task(session.approve(approval_id, approved=True))
        await asyncio.sleep(0.5)  # the update waits for a worker too
        async with worker():
            assert await asyncio.wait_for(approving, PATIENCE) == reply_id
            assert (await session.wait(reply_id)).status is TurnStatus.INTERRUPTED
            [_, reply] = await session.messages()
        [part] = reply.tool_parts()
        assert part.approval is not None and part.approval.approved is True
        assert part.state is ToolState.OUTPUT_ERROR and part.error_text is not None
        assert "approved, but the turn ended before it ran" in part.error_text
        assert fakes.tool_calls == [], "the tool did not run"
    finally:
        with contextlib.suppress(Exception):
            await session.handle().terminate("test over")


async def test_a_close_that_failed_can_be_retried(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("touch x")), text_step("Done.")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    fakes.script(ActivityName.SANDBOX_KILL, non_retryable("SandboxBackendError", "kill failed"))

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await session.close()
    assert "close it again to retry" in str(refused.value.cause)
    await session.close()  # the kill works this time

    assert fakes.killed == ["sb-1", "sb-1"]
    described = await session.handle().describe()
    assert described.status is WorkflowExecutionStatus.COMPLETED


async def test_close_waits_for_a_sandbox_exec_and_kills_the_sandbox_it_made(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    fakes.steps = [text_step("Hello.")]
    session, first = await harness.start("hi")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    hold = Hold()
    fakes.script(ActivityName.SANDBOX_EXEC, hold)
    executing = asyncio.create_task(session.exec("make build"))
    await asyncio.wait_for(hold.started.wait(), PATIENCE)  # its sandbox exists now
    closing = asyncio.create_task(session.close())
    await asyncio.sleep(0.3)
    assert not closing.done() and fakes.killed == [], "close waits for the exec"
    with pytest.raises(WorkflowUpdateFailedError):
        await session.exec("one more")  # a new exec is refused while it closes
    hold.release.set()
    await asyncio.wait_for(executing, PATIENCE)
    await asyncio.wait_for(closing, PATIENCE)
    assert fakes.killed == ["sb-1"], "the sandbox the exec made did not outlive the session"


async def test_a_rewind_accepted_while_a_turns_answer_commits_is_not_undone(
    harness: Harness,
) -> None:
    """The turn's answer is being committed to the transcript store (a local activity
    that takes long: the worker keeps the workflow task alive and the session takes
    new updates meanwhile) when a rewind is accepted. The rewind waits for the commit
    and then cuts; the commit landing afterwards cannot put the cut messages back."""
    fakes = harness.fakes
    fakes.steps = [text_step("one"), text_step("two " + "x" * 5000)]
    limits = SessionLimits(commit_transcript_after_bytes=2000)  # only the long answer
    # The update lands at the task's heartbeat, 1.6 s in (8 s at the default timeout).
    session, first = await harness.start("1", limits=limits, task_timeout=timedelta(seconds=2))
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    hold = Hold(local=True)
    fakes.script(ActivityName.COMMIT_TRANSCRIPT, hold)
    second = await session.send("2")
    await asyncio.wait_for(hold.started.wait(), PATIENCE)
    rewinding = asyncio.create_task(session.update(SessionUpdate(last_message_id=first)))
    # Accepted once the worker heartbeats the workflow task (it does so at 80% of the
    # task's timeout): the update then waits for the lock, held by the turn.
    await eventually(
        session.history,
        lambda events: any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
            == "update"
            for e in events
        ),
        "the rewind to be accepted while the commit runs",
        patience=20,
    )
    assert not rewinding.done(), "the rewind waits for the commit"
    hold.release.set()
    await asyncio.wait_for(rewinding, PATIENCE)

    assert (await session.wait(second)).status is TurnStatus.FINISHED
    assert [m.text() for m in await session.transcript()] == ["1", "one"]
    await healthy(session)


async def test_a_rewind_waiting_behind_another_finds_its_message_gone(harness: Harness) -> None:
    """Two rewinds, the second validated while the first holds the lock (waiting for
    its sandbox): the first cuts the message the second keeps. The second is refused
    (MessageNotFound), where it failed the workflow task (an assertion) for good."""
    fakes = harness.fakes
    fakes.steps = [text_step("one"), text_step("two"), text_step("three")]
    session, first = await harness.start("1")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    second = await session.send("2")
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    hold = Hold()
    fakes.script(ActivityName.ENSURE_SANDBOX, hold)
    rewinding = asyncio.create_task(
        session.update(SessionUpdate(sandbox_id="sb-other", last_message_id=first))
    )
    await asyncio.wait_for(hold.started.wait(), PATIENCE)
    later = asyncio.create_task(session.update(SessionUpdate(last_message_id=second)))
    await asyncio.sleep(0.3)  # validated (the message is there), waiting for the lock
    hold.release.set()
    await asyncio.wait_for(rewinding, PATIENCE)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await asyncio.wait_for(later, PATIENCE)
    assert update_error_type(refused.value) == "MessageNotFound"
    await healthy(session)

    session.sent = 1  # what the session holds now: the rewind dropped the second
    third = await session.send("3")
    assert await answered(session, third) is TurnStatus.FINISHED
    assert [m.text() for m in await session.messages()] == ["1", "one", "3", "three"]


async def test_an_update_waiting_behind_a_close_is_refused(harness: Harness) -> None:
    """A rewind holds the lock (waiting for its sandbox) while a close and another
    update wait behind it: once the close has killed the sandbox and ended the session,
    the waiting update is refused, and points the session at no sandbox after its
    sandbox was killed (one that would outlive the session)."""
    fakes = harness.fakes
    fakes.steps = [text_step("one")]
    session, first = await harness.start("1")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    hold = Hold()
    fakes.script(ActivityName.ENSURE_SANDBOX, hold)
    rewinding = asyncio.create_task(
        session.update(SessionUpdate(sandbox_id="sb-other", last_message_id=first))
    )
    await asyncio.wait_for(hold.started.wait(), PATIENCE)
    closing = asyncio.create_task(session.close())
    await asyncio.sleep(0.3)  # the close is validated and waits for the lock
    pointing = asyncio.create_task(session.update(SessionUpdate(sandbox_id="sb-late")))
    await asyncio.sleep(0.3)
    hold.release.set()
    await asyncio.wait_for(rewinding, PATIENCE)
    await asyncio.wait_for(closing, PATIENCE)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await asyncio.wait_for(pointing, PATIENCE)
    assert update_error_type(refused.value) == "SessionClosed"
    assert [p.sandbox_id for p in fakes.ensure_calls] == ["sb-other"]
    assert fakes.killed == ["sb-other"]
    described = await session.handle().describe()
    assert described.status is WorkflowExecutionStatus.COMPLETED


async def test_a_close_waiting_behind_another_close_is_done_at_once(harness: Harness) -> None:
    """Two closes, the second validated while the first kills the sandbox: the second
    finds the session closed and is done, where it killed the sandbox and ended the
    stream a second time (and a failure of that second kill said the closed session
    "stays open")."""
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("touch x")), text_step("Done.")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    hold = Hold()
    fakes.script(ActivityName.SANDBOX_KILL, hold)
    closing = asyncio.create_task(session.close())
    await asyncio.wait_for(hold.started.wait(), PATIENCE)
    again = asyncio.create_task(session.close())
    await asyncio.sleep(0.3)  # validated (nothing runs), waiting for the lock
    hold.release.set()
    await asyncio.wait_for(closing, PATIENCE)
    await asyncio.wait_for(again, PATIENCE)
    assert fakes.killed == ["sb-1"]
    assert len(fakes.ended) == 1
    described = await session.handle().describe()
    assert described.status is WorkflowExecutionStatus.COMPLETED


async def test_an_interrupt_tells_the_running_steps_worker_and_only_then(
    harness: Harness,
) -> None:
    """The workflow announces each cancel of a running step (one interrupt path,
    `activities.interrupt_notice`); an interrupt with nothing running announces nothing."""
    gate = Gate(result=text_step("long answer"), partial=text_step("I was say"))
    harness.fakes.steps = [gate]
    session, reply_id = await harness.start("talk")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    await session.interrupt()
    assert (await session.wait(reply_id)).status is TurnStatus.INTERRUPTED
    assert harness.fakes.announced == [session.workflow_id]

    await session.interrupt()  # idle: nothing to cancel, nothing to announce
    harness.fakes.steps = [text_step("hi")]
    assert (await session.wait(await session.send("again"))).status is TurnStatus.FINISHED
    assert harness.fakes.announced == [session.workflow_id]


async def test_a_wait_for_an_answer_that_is_being_committed_is_accepted(
    harness: Harness,
) -> None:
    """Found by tests/test_busy_strategies.py now and then: between a turn's end and
    its outcome being remembered (its answer committing to the transcript store), the
    answer belonged to no turn, no outcome and no queue, so a wait for it was refused
    MessageNotFound. It is the session's all along."""
    passed, committing = Hold(local=True), Hold(local=True)
    passed.release.set()
    # Commits after every step: the first before the model step, the second the turn's
    # own once it has ended.
    harness.fakes.script(ActivityName.COMMIT_TRANSCRIPT, passed, committing)
    harness.fakes.steps = [text_step("answer")]
    session, reply_id = await harness.start(
        "hello",
        limits=SessionLimits(commit_transcript_after_bytes=1),
        task_timeout=timedelta(seconds=2),  # the update lands at its heartbeat, 1.6 s in
    )
    await asyncio.wait_for(committing.started.wait(), PATIENCE)
    waiting = asyncio.ensure_future(session.wait(reply_id))

    async def decided() -> bool:
        """The session took the wait (accepted, in history) or refused it. With the
        local activity held, the update lands at the workflow task's heartbeat."""
        events = await session.history()
        return waiting.done() or any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in events
        )

    async with asyncio.timeout(60):
        while not await decided():
            await asyncio.sleep(0.2)
    assert not waiting.done(), f"decided before the answer was recorded: {waiting}"
    committing.release.set()
    assert (await waiting).status is TurnStatus.FINISHED


async def test_a_session_budget_given_while_a_turn_runs_is_met_at_its_next_step(
    harness: Harness,
) -> None:
    """`update(session_budget=...)` takes effect at once, busy or not (an operator
    raising a spent budget need not wait for the turn), and the turn's next model step
    carries it; an update that rewinds is still refused while the turn runs."""
    fakes = harness.fakes
    held = Hold()
    fakes.script(ActivityName.RUN_TOOL, held)
    fakes.steps = [tool_step(bash("make")), text_step("done")]
    session, reply = await harness.start("build it")
    await asyncio.wait_for(held.started.wait(), PATIENCE)

    raised = Budget(output_tokens=500)
    await session.update(SessionUpdate(session_budget=raised))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await session.update(SessionUpdate(last_message_id=reply))
    assert update_error_type(refused.value) == "SessionBusy"
    held.release.set()

    assert (await session.wait(reply)).status is TurnStatus.FINISHED
    assert [c.session_budget for c in fakes.model_calls] == [None, raised]
