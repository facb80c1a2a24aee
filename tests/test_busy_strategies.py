"""Busy-session strategies (`send(..., if_busy=...)`), decided by the session itself.

On the fast harness (the real workflow, scripted activities): each strategy with the
send arriving mid-turn, and racing the turn's end from both sides:

- *before the end*: the send lands in the same workflow task as the turn's last step
  result (the workflow worker is down while both happen, so the next worker gets them
  together): the session sees the turn still running, and the strategy applies to it;
- *after the end*: the turn's answer is complete and being committed (the commit held)
  when the send lands: the turn has ended, its answer stays, and the send is answered
  next whatever its strategy.

Then one test through the Python client and HTTP (409 `turn_running`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Worker

from sessionflow.contract import (
    ActivityName,
    IfBusy,
    SendRequest,
    SessionLimits,
    TurnOutcome,
    TurnStatus,
)
from sessionflow.errors import InvalidInput, TurnRunning
from sessionflow.messages import MessageStatus, Role
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow
from tests.conftest import Gateway
from tests.workflow_fakes import HEARTBEAT_THROTTLE, PATIENCE, Gate, Hold, text_step
from tests.workflow_harness import (
    Harness,
    Session,
    eventually,
    send_request,
    stop,
    update_error_type,
)

# -- helpers ------------------------------------------------------------------------------


# A workflow task timeout whose heartbeat (80%) lets a send in while a local activity
# is held, 1.6 s in rather than 8 s.
QUICK_TASKS = timedelta(seconds=2)


async def send_with(session: Session, text: str, if_busy: IfBusy) -> str:
    """Send through the `send_message` update, as the client does for reject/rollback."""
    request = send_with_request(text, if_busy)
    await session.handle().execute_update("send_message", request)
    session.sent += 1
    return request.assistant_message_id


def send_with_request(text: str, if_busy: IfBusy) -> SendRequest:
    request = send_request(text, interrupt=if_busy is IfBusy.INTERRUPT)
    return request.model_copy(update={"if_busy": if_busy})


def conversation(messages: list) -> list[tuple[Role, str]]:  # type: ignore[type-arg]
    return [(m.role, m.text()) for m in messages]


# -- mid-turn -----------------------------------------------------------------------------


async def test_enqueue_mid_turn_queues_the_message_behind_the_turn(harness: Harness) -> None:
    gate = Gate(result=text_step("answer 1"))
    harness.fakes.steps = [gate, text_step("answer 2")]
    session, first = await harness.start("one")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)

    second = await send_with(session, "two", IfBusy.ENQUEUE)
    assert (await session.info()).queued == 1
    gate.release.set()

    assert [(await session.wait(m)).status for m in (first, second)] == [TurnStatus.FINISHED] * 2
    assert conversation(await session.messages()) == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
        (Role.USER, "two"),
        (Role.ASSISTANT, "answer 2"),
    ]


async def test_reject_mid_turn_fails_at_once_and_queues_nothing(harness: Harness) -> None:
    gate = Gate(result=text_step("answer 1"))
    harness.fakes.steps = [gate, text_step("answer 2")]
    session, first = await harness.start("one")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)

    refused = send_with_request("two", IfBusy.REJECT)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await session.handle().execute_update("send_message", refused)
    assert update_error_type(caught.value) == "TurnRunning"
    assert "if_busy='reject'" in str(caught.value.cause)
    info = await session.info()
    assert info.busy and info.queued == 0
    # A rejected update leaves no trace in history.
    events = await session.history()
    assert not any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == "send_message"
        for e in events
    )

    gate.release.set()
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    assert conversation(await session.messages()) == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
    ]
    # Idle again: the same send is taken now.
    second = await send_with(session, "two", IfBusy.REJECT)
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "answer 2"


async def test_reject_while_messages_are_queued_is_refused_too(harness: Harness) -> None:
    gate = Gate(result=text_step("answer 1"))
    harness.fakes.steps = [gate, text_step("answer 2")]
    session, first = await harness.start("one")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    second = await session.send("two")

    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await session.handle().execute_update(
            "send_message", send_with_request("three", IfBusy.REJECT)
        )
    assert update_error_type(caught.value) == "TurnRunning"
    gate.release.set()
    assert [(await session.wait(m)).status for m in (first, second)] == [TurnStatus.FINISHED] * 2
    assert len(await session.messages()) == 4


async def test_interrupt_mid_turn_keeps_the_partial_answer_then_answers(
    harness: Harness,
) -> None:
    gate = Gate(partial=text_step("I was say"))
    harness.fakes.steps = [gate, text_step("answer 2")]
    session, first = await harness.start("one")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)

    second = await send_with(session, "two", IfBusy.INTERRUPT)

    assert (await session.wait(first)).status is TurnStatus.INTERRUPTED
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    messages = await session.messages()
    assert conversation(messages) == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "I was say"),
        (Role.USER, "two"),
        (Role.ASSISTANT, "answer 2"),
    ]
    assert messages[1].status is MessageStatus.INTERRUPTED


async def test_rollback_mid_turn_removes_the_turn_and_its_state_then_answers(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    gate = Gate(partial=text_step("half an answer", state={"count": 99}))
    fakes.steps = [text_step("answer 1", state={"count": 1}), gate, text_step("answer 3")]
    session, first = await harness.start("one")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    second = await session.send("two")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)

    third = await send_with(session, "three", IfBusy.ROLLBACK)

    assert (await session.wait(second)) == TurnOutcome(
        message_id=second, status=TurnStatus.ROLLED_BACK
    )
    assert (await session.wait(third)).status is TurnStatus.FINISHED
    # As if "two" had never been sent: the model saw no trace of it either.
    assert conversation(await session.messages()) == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
        (Role.USER, "three"),
        (Role.ASSISTANT, "answer 3"),
    ]
    assert [m.text() for m in fakes.model_calls[-1].messages if m.role is Role.USER] == [
        "one",
        "three",
    ]
    assert fakes.model_calls[-1].state == {"count": 1}
    assert {"type": "abort", "reason": "rolled back: a new message replaced this turn"} in (
        fakes.published_chunks(second)
    )
    assert gate.cancelled.is_set()


async def test_rollback_with_a_committed_transcript_restores_the_reference(
    harness: Harness,
) -> None:
    """Commits during the rolled-back turn (every step here) are undone by pointing
    back at the transcript as it stood: no segment is rewritten."""
    fakes = harness.fakes
    gate = Gate(partial=text_step("half"))
    fakes.steps = [text_step("answer 1"), gate, text_step("answer 3")]
    limits = SessionLimits(commit_transcript_after_bytes=1)
    session, first = await harness.start("one", limits=limits)
    await session.wait(first)
    second = await session.send("two")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    rewinds = len(fakes.rewinds)

    third = await send_with(session, "three", IfBusy.ROLLBACK)

    assert (await session.wait(second)).status is TurnStatus.ROLLED_BACK
    assert (await session.wait(third)).status is TurnStatus.FINISHED
    assert conversation(await session.transcript()) == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
        (Role.USER, "three"),
        (Role.ASSISTANT, "answer 3"),
    ]
    assert len(fakes.rewinds) == rewinds


# -- racing the end: the send lands with the turn's last step result ---------------------


@pytest.fixture
async def split_harness(harness: Harness) -> AsyncIterator[tuple[Harness, str]]:
    """The harness's fakes served on a task queue of their own by an activity worker
    and, started by the test, a workflow worker that runs no remote activities: the
    workflow worker can go down while an activity finishes."""
    queue = f"split-{uuid.uuid4().hex[:10]}"
    activities = Worker(
        harness.env.client,
        task_queue=queue,
        activities=harness.fakes.activities(),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )
    async with activities:
        harness.task_queue = queue
        yield harness, queue


def workflow_worker(harness: Harness, queue: str) -> Worker:
    return Worker(
        harness.env.client,
        task_queue=queue,
        workflows=[SessionWorkflow],
        # Local activities (publish, commit) run beside the workflow.
        activities=harness.fakes.activities(),
        no_remote_activities=True,
        workflow_runner=_WORKFLOW_RUNNER,
        max_cached_workflows=0,
    )


async def send_as_the_turn_ends(
    harness: Harness, queue: str, if_busy: IfBusy
) -> tuple[Session, str, SendRequest, BaseException | None]:
    """Start a turn, stop the workflow worker, let the turn's last model step finish
    and send meanwhile; then start a workflow worker, which gets the step's result and
    the send in one workflow task. Returns the session, the turn's message id, the
    request, and what the send raised (None: taken)."""
    gate = Gate(result=text_step("answer 1"))
    harness.fakes.steps = [gate, text_step("answer 2")]
    async with workflow_worker(harness, queue):
        session, first = await harness.start("one")
        await asyncio.wait_for(gate.started.wait(), PATIENCE)
        # Down only between workflow tasks (one cut short would time out first).
        await quiet(session)
    request = send_with_request("two", if_busy)
    sending = asyncio.create_task(session.handle().execute_update("send_message", request))

    # Nothing the test server shows tells that an update waits for a workflow task
    # (no pending task is described): give the request a moment to arrive. Whether
    # it did is checked below, from history, by what the session did with it.
    await asyncio.sleep(0.5)
    gate.release.set()

    async def last_step_recorded() -> bool:
        return any(
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            for e in await session.history()
        )

    await eventually(last_step_recorded, bool, "the last step's result in history")
    assert not sending.done()
    async with workflow_worker(harness, queue):
        try:
            await asyncio.wait_for(sending, PATIENCE)
            raised: BaseException | None = None
        except WorkflowUpdateFailedError as err:
            raised = err
        session.sent += 1
        if raised is None:
            assert one_task(await session.history()), "the send and the step's end came apart"
        await settle(session, first, request, raised)
    return session, first, request, raised


def one_task(events: list) -> bool:  # type: ignore[type-arg]
    """Whether the update was accepted by the workflow task that took the step's result
    (one task completed between the two: the update's acceptance is that task's)."""
    kinds = [e.event_type for e in events]
    completed = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    accepted = kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, completed)
    between = kinds[completed:accepted]
    return between.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1


async def quiet(session: Session) -> None:
    """Until no workflow task is in flight and history stays as it is for a moment."""
    last, calm = -1, 0
    while calm < 5:
        described = await session.handle().describe()
        busy = described.raw_description.HasField("pending_workflow_task")
        calm = 0 if busy or described.history_length != last else calm + 1
        last = described.history_length
        await asyncio.sleep(0.02)


async def settle(
    session: Session, first: str, request: SendRequest, raised: BaseException | None
) -> None:
    """Wait for both turns (while the workflow worker runs)."""
    await session.wait(first)
    if raised is None:
        await session.wait(request.assistant_message_id)


async def test_reject_racing_the_end_sees_the_turn_running(
    split_harness: tuple[Harness, str],
) -> None:
    harness, queue = split_harness
    session, first, _, raised = await send_as_the_turn_ends(harness, queue, IfBusy.REJECT)
    # Documented: a send in the same workflow task as the turn's last step result
    # finds the turn running. Refused, and the turn's answer stands, whole.
    assert isinstance(raised, WorkflowUpdateFailedError)
    assert update_error_type(raised) == "TurnRunning"
    async with workflow_worker(harness, queue):
        assert (await session.wait(first)).status is TurnStatus.FINISHED
        assert conversation(await session.messages()) == [
            (Role.USER, "one"),
            (Role.ASSISTANT, "answer 1"),
        ]
        assert (await session.info()).queued == 0
        await stop(session)  # while a worker runs: no task left for the test server


async def test_rollback_racing_the_end_takes_out_the_turn_it_found_running(
    split_harness: tuple[Harness, str],
) -> None:
    harness, queue = split_harness
    session, first, request, raised = await send_as_the_turn_ends(harness, queue, IfBusy.ROLLBACK)
    assert raised is None
    async with workflow_worker(harness, queue):
        # The step had finished, but the rollback came first: the whole turn goes.
        assert (await session.wait(first)).status is TurnStatus.ROLLED_BACK
        assert (await session.wait(request.assistant_message_id)).status is TurnStatus.FINISHED
        assert conversation(await session.messages()) == [
            (Role.USER, "two"),
            (Role.ASSISTANT, "answer 2"),
        ]
        await stop(session)


@pytest.mark.parametrize("if_busy", [IfBusy.ENQUEUE, IfBusy.INTERRUPT])
async def test_enqueue_and_interrupt_racing_the_end_answer_both(
    split_harness: tuple[Harness, str], if_busy: IfBusy
) -> None:
    harness, queue = split_harness
    session, first, request, raised = await send_as_the_turn_ends(harness, queue, if_busy)
    assert raised is None
    async with workflow_worker(harness, queue):
        outcome = (await session.wait(first)).status
        # Interrupting a turn whose last step has returned ends it interrupted, with
        # the step's whole answer kept; queueing leaves it finished.
        expected = TurnStatus.INTERRUPTED if if_busy is IfBusy.INTERRUPT else TurnStatus.FINISHED
        assert outcome is expected
        assert (await session.wait(request.assistant_message_id)).status is TurnStatus.FINISHED
        assert conversation(await session.messages()) == [
            (Role.USER, "one"),
            (Role.ASSISTANT, "answer 1"),
            (Role.USER, "two"),
            (Role.ASSISTANT, "answer 2"),
        ]
        await stop(session)


# -- racing the end: the send lands just after it -----------------------------------------


@pytest.mark.parametrize("if_busy", list(IfBusy))
async def test_a_send_after_the_answer_is_complete_leaves_it_whatever_the_strategy(
    harness: Harness, if_busy: IfBusy
) -> None:
    """The turn's answer is complete and being committed (the commit held) when the
    send lands: the turn counts as ended, so nothing is refused, interrupted or rolled
    back, and the message is answered next. (A held local activity keeps the workflow
    task open: the send is delivered at the task's heartbeat, 80% of its timeout.)"""
    fakes = harness.fakes
    passed = Hold(local=True)
    passed.release.set()
    committing = Hold(local=True)
    # Commits after every step: the first before the model step, the second the
    # turn's own once it has ended.
    fakes.script(ActivityName.COMMIT_TRANSCRIPT, passed, committing)
    fakes.steps = [text_step("answer 1"), text_step("answer 2")]
    limits = SessionLimits(commit_transcript_after_bytes=1)
    session, first = await harness.start("one", limits=limits, task_timeout=QUICK_TASKS)
    await asyncio.wait_for(committing.started.wait(), PATIENCE)

    second = await send_with(session, "two", if_busy)
    committing.release.set()

    assert (await session.wait(first)).status is TurnStatus.FINISHED
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    assert conversation(await session.transcript()) == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
        (Role.USER, "two"),
        (Role.ASSISTANT, "answer 2"),
    ]


# -- through the Python client and HTTP ---------------------------------------------------


async def test_reject_is_a_409_over_http_and_turn_running_in_python_and_rollback_works(
    gateway: Gateway, unique_id: str
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    auth = gateway.headers()
    session = gateway.client.agent("approver").session(f"acme:{unique_id}")
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            f"{base}/messages?agent=approver", json={"message": "go"}, headers=auth
        )
        first = sent.json()["assistantMessageId"]

        async def waiting_for_approval() -> dict[str, Any]:
            got: dict[str, Any] = (await http.get(f"{base}?agent=approver", headers=auth)).json()
            return got

        await eventually(
            waiting_for_approval, lambda i: bool(i.get("pendingApprovals")), "an approval"
        )

        refused = await http.post(
            f"{base}/messages?agent=approver",
            json={"message": "second", "ifBusy": "reject"},
            headers=auth,
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "turn_running"
        with pytest.raises(TurnRunning, match="if_busy='reject'"):
            await session.send("third", if_busy="reject")
        with pytest.raises(InvalidInput):
            await session.send("fourth", if_busy="reject", interrupt_if_streaming=True)
        conflicting = await http.post(
            f"{base}/messages?agent=approver",
            json={"message": "fifth", "ifBusy": "rollback", "interruptIfStreaming": True},
            headers=auth,
        )
        assert conflicting.status_code == 422
        info = (await http.get(f"{base}?agent=approver", headers=auth)).json()
        assert info["queued"] == 0 and info["messageCount"] == 2

        # Rollback, over HTTP: the waiting turn goes, "instead" runs in its place.
        rolled = await http.post(
            f"{base}/messages?agent=approver",
            json={"message": "instead", "ifBusy": "rollback"},
            headers=auth,
        )
        assert rolled.status_code == 202
        outcome = await http.get(f"{base}/messages/{first}/outcome?agent=approver&wait=30",
                                 headers=auth)  # fmt: skip
        assert outcome.json()["status"] == "rolled_back"
        await eventually(
            waiting_for_approval, lambda i: bool(i.get("pendingApprovals")), "the new approval"
        )
        history = (await http.get(f"{base}/history?agent=approver", headers=auth)).json()
        texts = [
            p.get("text") for m in history["messages"] for p in m["parts"] if p["type"] == "text"
        ]
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
        assert texts == ["instead", "I need to run a command."]
        # And from Python: a rollback of that one leaves only the newest message.
        again = await session.send("once more", if_busy="rollback")
        assert (await session.answer(rolled.json()["assistantMessageId"]).outcome).status is (
            TurnStatus.ROLLED_BACK
        )
        await eventually(session.info, lambda i: bool(i.pending_approvals), "a third approval")
        [asked, answer] = await session.history()
        assert asked.text() == "once more"
        assert answer.id == again.assistant_message_id
