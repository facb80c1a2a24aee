"""SessionWorkflow's orchestration logic, against mocked activities: a fast test loop.

The real `SessionWorkflow` runs on Temporal's time-skipping test server and every
activity it calls is a scripted fake (the harness: `tests/workflow_harness.py`, its
fakes `tests/workflow_fakes.py`, the `harness` fixture in `tests/conftest.py`). Each
test scripts what the activities answer and checks what the workflow does with it,
only through the workflow's external surface (the `send`/`interrupt` signals, the
`wait_turn`/`approve` updates, the `messages`/`info`/`state`/`usage` queries, and the
activity calls it makes).
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from sessionflow.contract import (
    ActivityName,
    RunToolResult,
    SessionInput,
    SessionLimits,
    SessionStatus,
    TurnOutcome,
    TurnStatus,
)
from sessionflow.messages import MessageStatus, Role, ToolCall, ToolState, Usage
from sessionflow.workflows import search
from tests.workflow_fakes import (
    AGENT,
    MODEL,
    PATIENCE,
    STEP_USAGE,
    Gate,
    bash,
    non_retryable,
    text_step,
    tool_step,
)
from tests.workflow_harness import (
    Harness,
    activity_completed,
    eventually,
    pending_approval,
    timer_started,
    update_error_type,
    where_it_stands,
)

# -- turns --------------------------------------------------------------------------------


async def test_tool_call_then_final_answer(harness: Harness) -> None:
    fakes = harness.fakes
    call = bash("ls")
    fakes.steps = [tool_step(call), text_step("Two files.")]
    fakes.tool_answers = [RunToolResult(output={"stdout": "a.txt b.txt"})]

    session, reply_id = await harness.start("list the files")
    outcome = await session.wait(reply_id)

    assert outcome == TurnOutcome(message_id=reply_id, status=TurnStatus.FINISHED)
    user, reply = await session.messages()
    assert (user.role, user.text()) == (Role.USER, "list the files")
    assert (reply.id, reply.role, reply.status) == (
        reply_id,
        Role.ASSISTANT,
        MessageStatus.COMPLETE,
    )
    [part] = reply.tool_parts()
    assert (part.tool_call_id, part.state) == ("call-1", ToolState.OUTPUT_AVAILABLE)
    assert part.output == {"stdout": "a.txt b.txt"}
    assert reply.text() == "Two files."
    assert reply.step_count() == 2

    # The tool ran once, in the sandbox made for it, for the first step of this reply.
    [ensured] = fakes.ensure_calls
    assert ensured.sandbox_id is None
    [ran] = fakes.tool_calls
    assert ran.call == call
    assert ran.sandbox_id == "sb-1"
    assert (ran.ref.message_id, ran.ref.step) == (reply_id, 0)
    # The second model step saw the tool's result.
    first, second = fakes.model_calls
    assert [m.id for m in first.messages] == [user.id, reply_id]
    [seen] = second.messages[-1].tool_parts()
    assert (seen.state, seen.output) == (ToolState.OUTPUT_AVAILABLE, {"stdout": "a.txt b.txt"})
    assert second.ref.step == 1

    info = await session.info()
    assert (info.status, info.busy, info.queued) == (SessionStatus.IDLE, False, 0)
    assert (info.message_count, info.sandbox_id) == (2, "sb-1")
    assert info.usage == STEP_USAGE + STEP_USAGE
    assert (await session.usage()).by_model == {MODEL: STEP_USAGE + STEP_USAGE}
    # Time stands still unless a test skips it: the idle pause (300 s) is not due.
    assert fakes.paused == []


async def test_messages_sent_during_a_turn_queue_and_are_answered_in_order(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    gate = Gate(result=text_step("answer 1"))
    fakes.steps = [gate, text_step("answer 2"), text_step("answer 3")]

    session, first = await harness.start("one")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    second = await session.send("two")
    third = await session.send("three")
    info = await session.info_when(lambda i: i.queued == 2, "two queued messages")
    assert info.busy
    assert info.status is SessionStatus.STREAMING

    gate.release.set()
    outcomes = [await session.wait(m) for m in (first, second, third)]

    assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 3
    messages = await session.messages()
    assert [(m.role, m.text()) for m in messages] == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
        (Role.USER, "two"),
        (Role.ASSISTANT, "answer 2"),
        (Role.USER, "three"),
        (Role.ASSISTANT, "answer 3"),
    ]
    assert [m.id for m in messages[1::2]] == [first, second, third]
    # One turn at a time: each model step saw the whole conversation before it.
    assert [c.ref.message_id for c in fakes.model_calls] == [first, second, third]
    assert [len(c.messages) for c in fakes.model_calls] == [2, 4, 6]
    assert (await session.info()).queued == 0


# -- approvals ----------------------------------------------------------------------------


async def test_denied_approval_skips_the_tool(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("rm -rf /"), needs_approval=[True]), text_step("Not run.")]

    session, reply_id = await harness.start("clean up")
    approval_id = await pending_approval(session)
    # Findable as waiting for a person, in the UI and `temporal workflow list --query`.
    await eventually(
        session.search_attributes,
        lambda found: (
            (found.get(search.STATUS), found.get(search.PENDING_APPROVALS)) == ("needs-approval", 1)
        ),
        "the needs-approval search attributes",
    )

    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert part.state is ToolState.APPROVAL_REQUESTED
    assert part.approval is not None and part.approval.id == approval_id
    assert {
        "type": "tool-approval-request",
        "approvalId": approval_id,
        "toolCallId": "call-1",
    } in fakes.published_chunks(reply_id)

    assert await session.approve(approval_id, approved=False, reason="too dangerous") == reply_id
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FINISHED
    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_DENIED
    assert part.approval is not None
    assert (part.approval.approved, part.approval.reason) == (False, "too dangerous")
    assert part.error_text is not None and "too dangerous" in part.error_text
    assert reply.text() == "Not run."
    assert fakes.tool_calls == []
    assert fakes.ensure_calls == []
    assert {"type": "tool-output-denied", "toolCallId": "call-1"} in fakes.published_chunks(
        reply_id
    )
    info = await session.info()
    assert (info.status, info.pending_approvals) == (SessionStatus.IDLE, [])
    found = await eventually(
        session.search_attributes,
        lambda found: found.get(search.STATUS) == "idle",
        "the idle search attributes",
    )
    assert (found.get(search.AGENT), found.get(search.PENDING_APPROVALS)) == (AGENT, 0)
    assert found.get(search.TOKENS) == 2 * STEP_USAGE.total_tokens


async def test_granted_approval_runs_the_tool(harness: Harness) -> None:
    fakes = harness.fakes
    call = bash("make deploy")
    fakes.steps = [tool_step(call, needs_approval=[True]), text_step("Deployed.")]
    fakes.tool_answers = [RunToolResult(output="ok")]

    session, reply_id = await harness.start("deploy")
    approval_id = await pending_approval(session)
    assert fakes.tool_calls == []

    assert await session.approve(approval_id, approved=True) == reply_id
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FINISHED
    [ran] = fakes.tool_calls
    assert ran.call == call
    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert (part.state, part.output) == (ToolState.OUTPUT_AVAILABLE, "ok")
    assert part.approval is not None and part.approval.approved is True
    assert reply.text() == "Deployed."


async def test_approving_an_unknown_approval_is_rejected_and_the_session_keeps_working(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    fakes.steps = [
        tool_step(bash("date"), needs_approval=[True]),
        text_step("It is now."),
        text_step("Still here."),
    ]

    session, reply_id = await harness.start("what time is it")
    approval_id = await pending_approval(session)

    # Unknown while another approval is pending: rejected, the real one stays pending.
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await session.approve("approval-unknown", approved=True)
    assert update_error_type(rejected.value) == "ApprovalNotPending"
    assert (await session.info()).pending_approvals == [approval_id]

    await session.approve(approval_id, approved=True)
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED

    # Already answered, its turn over: rejected too.
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await session.approve(approval_id, approved=False)
    assert update_error_type(again.value) == "ApprovalNotPending"

    next_id = await session.send("and now?")
    assert (await session.wait(next_id)).status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Still here."
    assert len(fakes.tool_calls) == 1


# -- interrupts and failures --------------------------------------------------------------


@pytest.mark.parametrize("cancelled_step", ["returns-partial", "raises-cancelled"])
async def test_interrupt_cancels_the_running_model_step(
    harness: Harness, cancelled_step: str
) -> None:
    fakes = harness.fakes
    partial = text_step("I was say") if cancelled_step == "returns-partial" else None
    gate = Gate(partial=partial)
    fakes.steps = [gate, text_step("Fresh answer.")]

    session, reply_id = await harness.start("tell me a long story")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    await session.interrupt()
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.INTERRUPTED
    # The activity itself was cancelled, at the workflow's request (not a timeout).
    assert gate.cancelled.is_set()
    assert gate.cancel_requested is True
    [_, reply] = await session.messages()
    assert reply.status is MessageStatus.INTERRUPTED
    assert reply.text() == ("I was say" if partial else "")
    assert {"type": "abort", "reason": "interrupted by the user"} in fakes.published_chunks(
        reply_id
    )
    assert (await session.info()).status is SessionStatus.INTERRUPTED
    assert len(fakes.model_calls) == 1

    next_id = await session.send("a short one then")
    assert (await session.wait(next_id)).status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Fresh answer."


async def test_non_retryable_model_failure_fails_the_turn_and_the_next_message_works(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    fakes.steps = [
        non_retryable("ModelNotFound", "model 'fake/nope' does not exist"),
        text_step("Recovered."),
    ]

    session, reply_id = await harness.start("hello")
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "ModelNotFound"
    assert outcome.error is not None and "fake/nope" in outcome.error
    assert len(fakes.model_calls) == 1  # not retried
    [_, reply] = await session.messages()
    assert reply.status is MessageStatus.FAILED
    assert reply.metadata is not None and "fake/nope" in reply.metadata["error"]
    assert any(c["type"] == "error" for c in fakes.published_chunks(reply_id))
    assert (await session.info()).status is SessionStatus.FAILED

    next_id = await session.send("hello again")
    outcome = await session.wait(next_id)
    assert outcome.status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Recovered."
    assert (await session.info()).status is SessionStatus.IDLE


async def test_vanished_sandbox_is_replaced_and_the_tool_call_retried(harness: Harness) -> None:
    fakes = harness.fakes
    call = bash("cat notes.txt")
    fakes.steps = [tool_step(call), text_step("Read it.")]
    fakes.tool_answers = [
        non_retryable("SandboxNotFound", "sandbox sb-1 does not exist"),
        RunToolResult(output="notes"),
    ]

    session, reply_id = await harness.start("read my notes")
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FINISHED
    # Created, then re-created in place of the one that vanished.
    assert [(e.sandbox_id, e.must_exist) for e in fakes.ensure_calls] == [
        (None, False),
        ("sb-1", False),
    ]
    assert [(t.call, t.sandbox_id) for t in fakes.tool_calls] == [(call, "sb-1"), (call, "sb-2")]
    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert (part.state, part.output) == (ToolState.OUTPUT_AVAILABLE, "notes")
    assert (await session.info()).sandbox_id == "sb-2"


# -- timers and continue-as-new -----------------------------------------------------------


async def test_idle_sandbox_is_paused_once(harness: Harness) -> None:
    fakes, env = harness.fakes, harness.env
    fakes.steps = [tool_step(bash("touch x")), text_step("Done.")]
    limits = SessionLimits(pause_sandbox_after_seconds=60)

    session, reply_id = await harness.start("make a file", limits=limits)
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED
    assert fakes.paused == []
    # The idle timer is armed once the turn is over; then skip past it.
    await eventually(session.history, timer_started, "the idle timer")
    await env.sleep(61)
    await fakes.until(lambda: bool(fakes.paused), "the sandbox to be paused")
    assert fakes.paused == ["sb-1"]

    # Paused once, not again however long the session stays idle.
    await eventually(session.history, activity_completed(ActivityName.SANDBOX_PAUSE), "the pause")
    await env.sleep(3600)
    assert (await session.info()).status is SessionStatus.IDLE
    assert fakes.paused == ["sb-1"]
    assert fakes.killed == []


async def test_plain_python_tools_make_no_sandbox_and_arm_no_pause_until_bash(
    harness: Harness,
) -> None:
    """A session whose calls are all of tools without `sandbox=True` gets no sandbox
    and no idle pause timer; its first Bash call makes the sandbox, and the pause timer
    is armed from then on."""
    fakes, env = harness.fakes, harness.env
    note = ToolCall(tool_call_id="call-1", tool_name="add_note", input={"text": "x"})
    fakes.steps = [
        tool_step(note, uses_sandbox=[False]),
        text_step("Noted."),
        tool_step(bash("touch x", call_id="call-2"), uses_sandbox=[True]),
        text_step("Done."),
    ]
    limits = SessionLimits(pause_sandbox_after_seconds=60)

    session, first = await harness.start("note it", limits=limits)
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    [ran] = fakes.tool_calls
    assert (ran.call.tool_name, ran.sandbox_id) == ("add_note", None)
    assert fakes.ensure_calls == []
    info = await session.info()
    assert (info.status, info.sandbox_id) == (SessionStatus.IDLE, None)
    # Idle with no sandbox: nothing to pause, so no timer; skipping time changes nothing.
    await env.sleep(3600)
    events = await session.history()
    assert not timer_started(events)
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    sandbox_activities = {
        ActivityName.ENSURE_SANDBOX.value,
        ActivityName.SANDBOX_PAUSE.value,
        ActivityName.SANDBOX_KILL.value,
        ActivityName.SANDBOX_STATUS.value,
        ActivityName.SANDBOX_EXEC.value,
    }
    assert scheduled & sandbox_activities == set(), scheduled
    assert fakes.paused == []

    # A later turn calls Bash: its sandbox is made then, and the pause timer armed.
    second = await session.send("now make a file")
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    [ensured] = fakes.ensure_calls
    assert ensured.sandbox_id is None
    assert fakes.tool_calls[1].sandbox_id == "sb-1"
    assert (await session.info()).sandbox_id == "sb-1"
    await eventually(session.history, timer_started, "the idle timer")
    await env.sleep(61)
    await fakes.until(lambda: fakes.paused == ["sb-1"], "the sandbox to be paused")


async def test_a_message_sent_while_closing_opens_a_new_empty_session(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("touch x")), text_step("Done."), text_step("Fresh start.")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    fakes.kill_gate = asyncio.Event()

    closing = asyncio.create_task(session.handle().execute_update("close", None))
    await fakes.until(lambda: fakes.killed == ["sb-1"], "the kill to start")
    reply_id = await session.send("are you there?")  # arrives while the kill runs
    fakes.kill_gate.set()
    await closing

    # The message was not answered by the closing session, in its dying sandbox: it
    # opened a new, empty session under the same id, as a send after close would.
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED
    [user, reply] = await session.messages()
    assert (user.text(), reply.text()) == ("are you there?", "Fresh start.")
    assert len(fakes.tool_calls) == 1
    assert (await session.info()).sandbox_id is None


async def test_continue_as_new_carries_the_session_over(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [
        tool_step(bash("echo 1")),
        text_step("one", state={"turns": 1}),
        text_step("two", state={"turns": 2}),
        text_step("three", state={"turns": 3}),
    ]
    # Every turn's history passes the bound: each turn ends with continue-as-new.
    limits = SessionLimits(continue_as_new_after_events=1)

    session, first = await harness.start("1", limits=limits)
    replies = [first]
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    for text in ("2", "3"):
        replies.append(await session.send(text))
        assert (await session.wait(replies[-1])).status is TurnStatus.FINISHED

    info = await session.info()
    assert info.run_count == 4
    assert (await session.handle().describe()).run_id != session.first_run
    messages = await session.messages()
    assert [m.text() for m in messages] == ["1", "one", "2", "two", "3", "three"]
    assert [m.id for m in messages[1::2]] == replies
    assert await session.state() == {"turns": 3}
    # The sandbox, state and transcript reached the later runs' activities.
    assert info.sandbox_id == "sb-1"
    assert len(fakes.ensure_calls) == 1
    last = fakes.model_calls[-1]
    assert (last.state, last.sandbox_id) == ({"turns": 2}, "sb-1")
    assert len(last.messages) == 6
    assert info.usage == Usage(input_tokens=40, output_tokens=20)
    # Outcomes are remembered across runs: the first turn can still be awaited.
    assert (await session.wait(first)).status is TurnStatus.FINISHED


async def test_continue_as_new_keeps_search_attributes_off(harness: Harness) -> None:
    harness.fakes.steps = [text_step("one"), text_step("two")]
    limits = SessionLimits(continue_as_new_after_events=1)

    session, first = await harness.start("1", limits=limits, search_attributes=False)
    assert (await session.wait(first)).status is TurnStatus.FINISHED

    # The next run's input, as its history records it.
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while (await session.handle().describe()).run_id == session.first_run:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the session did not continue as new: {await where_it_stands(session)}")
        await asyncio.sleep(0.02)
    started = await anext(aiter(session.handle().fetch_history_events()))
    [next_input] = await harness.env.client.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads, [SessionInput]
    )
    assert next_input.search_attributes is False
    assert (await session.wait(await session.send("2"))).status is TurnStatus.FINISHED
