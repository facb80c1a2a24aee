"""Every path of a session's life ends well (issue 24): failures the model-based test
(`tests/test_session_state_machine.py`) found, each written down as the smallest
sequence that shows it, asserting what DESIGN.md's rule 10 promises.

Marked xfail(strict) until the workflow is fixed: a fix makes them pass, and strict
marks then fail the suite until the marks are removed.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)

from sessionflow.contract import (
    ActivityName,
    SessionLimits,
    SessionStatus,
    SessionUpdate,
    TurnStatus,
)
from sessionflow.messages import ToolState
from tests.workflow_fakes import PATIENCE, Hold, bash, non_retryable, text_step, tool_step
from tests.workflow_harness import (
    Harness,
    Session,
    eventually,
    pending_approval,
    send_request,
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


@pytest.mark.xfail(strict=True, reason="issue 24: max_steps_per_turn=0 fails every workflow task")
async def test_a_turn_with_no_steps_allowed_ends_and_the_session_keeps_working(
    harness: Harness,
) -> None:
    harness.fakes.steps = [text_step("never asked")]
    session = harness.session()
    request = send_request("hello")
    await harness.signal_with_start(session, request, limits=SessionLimits(max_steps_per_turn=0))

    # The first workflow task that runs the turn either completes or fails.
    await eventually(
        session.history,
        lambda events: any(e.event_type in TASK_ENDED for e in events[3:]),
        "the turn's workflow task",
    )
    await healthy(session)
    assert await answered(session, request.assistant_message_id) is TurnStatus.FINISHED


@pytest.mark.xfail(strict=True, reason="issue 24: a send during a rewind is wiped")
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


@pytest.mark.xfail(strict=True, reason="issue 24: a sandbox kill failure during close wedges")
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


@pytest.mark.xfail(strict=True, reason="issue 24: an idle-sandbox pause failure fails the workflow")
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


@pytest.mark.xfail(
    strict=True, reason="issue 24: an approval racing an interrupt is acknowledged, not recorded"
)
async def test_an_approval_acknowledged_as_the_turn_is_interrupted_is_recorded(
    harness: Harness,
) -> None:
    harness.fakes.steps = [tool_step(bash("make deploy"), needs_approval=[True])]
    session, reply_id = await harness.start("deploy")
    approval_id = await pending_approval(session)

    # Both at once: when they reach the session in one workflow task, the approval is
    # accepted (its approval is still pending) as the turn is being stopped.
    _, approving = await asyncio.gather(
        session.interrupt(),
        session.approve(approval_id, approved=True),
        return_exceptions=True,
    )
    if isinstance(approving, WorkflowUpdateFailedError):
        pytest.skip("the interrupt reached the session first: the approval was refused")
    assert approving == reply_id
    assert (await session.wait(reply_id)).status is TurnStatus.INTERRUPTED

    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert part.approval is not None and part.approval.approved is True
    assert part.state in (ToolState.OUTPUT_ERROR, ToolState.OUTPUT_AVAILABLE)
