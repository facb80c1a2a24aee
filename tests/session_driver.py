"""A session driven the way clients drive it, beside a model of what it must end up as.

`tests/test_session_state_machine.py` lets Hypothesis pick the actions; this module does
them (on the harness's event loop) and says what must hold afterwards:

- always: no workflow task failed, the run did not fail, and the transcript is well
  formed (unique ids, every reply right after its user message, every tool call of an
  ended turn in a terminal state, every acknowledged approval decision recorded);
- once settled (holds released, time skipped until nothing is pending): every
  acknowledged send was answered or reported failed, every update call returned, the
  session is idle, and its messages are exactly the model's.

Sends and updates are fired in the background so that the next action can race them;
an acknowledged send is one whose signal was delivered: from then on a `wait_turn` for
it must be accepted and must resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from sessionflow.contract import (
    ActivityName,
    ModelStepResult,
    SendRequest,
    SessionInfo,
    SessionLimits,
    SessionUpdate,
    TurnOutcome,
)
from sessionflow.messages import Message, MessageStatus, Role, ToolState
from tests.workflow_fakes import Gate, Hold
from tests.workflow_harness import (
    Harness,
    Session,
    send_request,
    update_error_type,
    where_it_stands,
    workflow_task_failures,
)

TERMINAL_TOOL_STATES = {ToolState.OUTPUT_AVAILABLE, ToolState.OUTPUT_ERROR, ToolState.OUTPUT_DENIED}
# Real seconds a just-sent message may stay unknown to the session (the test server
# may apply an update before the signal it follows; see `Session.seen`).
KNOWN_WITHIN = 2.0
# Settling: real seconds per round, then virtual seconds skipped, for at most ROUNDS.
ROUND_WAIT = 0.15
ROUND_SKIP = 30.0
ROUNDS = 40
# Reads of info, messages and info again until both infos agree (see `check`).
CONSISTENT_TRIES = 5
# Real seconds a time skip may take (it takes milliseconds on a healthy test server).
SKIP_WITHIN = 1.0


# Real seconds an update's result may take before the driver looks for it lost.
RESULT_PATIENCE = 2.0


class _LostWithItsRun(Exception):
    """The test server lost an accepted update together with its run's last task."""


class Violation(AssertionError):
    """The session broke one of the rules every state must keep (DESIGN.md, rule 10)."""


@dataclass
class Sent:
    request: SendRequest
    waiter: asyncio.Task[TurnOutcome]


@dataclass
class Call:
    """An update call in flight, and where the model stood when it was made."""

    name: str
    task: asyncio.Task[Any]
    # len(SessionDriver.expected) when the call was made (rewind and close cut there).
    mark: int
    target: str | None = None
    # Loop times: when the call was made, and when it was done.
    made: float = 0.0
    finished: float = float("inf")
    # A close made before another close was done: the session it closes is closed
    # already when it gets the lock, so it changes nothing (see `_reap`).
    after_close: bool = False


@dataclass
class SessionDriver:
    harness: Harness
    limits: SessionLimits
    session: Session = field(init=False)
    sent: list[Sent] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    # The message ids the session must hold once settled, in order.
    expected: list[str] = field(default_factory=list)
    # The messages of the session as it was closed (the next send opens a new one).
    closed: list[str] = field(default_factory=list)
    # Approval id -> the decision the session acknowledged.
    decisions: dict[str, bool] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # Gates and holds scripted so far: released when the session settles.
    held: list[Hold | Gate] = field(default_factory=list)
    started: bool = False
    # The test server's clock stuck (see `skip_time`): time no longer skips.
    clock_lost: bool = False
    # The test server dropped a workflow task it refused to complete (see `settle`):
    # the run can make no progress there, whatever the workflow does.
    task_lost: bool = False

    def __post_init__(self) -> None:
        self.session = self.harness.session()

    # -- scripting the activities -------------------------------------------------------

    def script_step(self, step: ModelStepResult | Exception | Gate, times: int = 1) -> None:
        if isinstance(step, Gate):
            self.held.append(step)
        self.harness.fakes.steps.extend([step] * times)

    def script(self, name: ActivityName, scripted: Exception | Hold, times: int = 1) -> None:
        if isinstance(scripted, Hold):
            self.held.append(scripted)
        self.harness.fakes.script(name, *[scripted] * times)

    # -- actions ----------------------------------------------------------------------

    async def send(self, text: str, *, interrupt: bool = False) -> None:
        request = send_request(text, interrupt=interrupt)
        await self.harness.signal_with_start(self.session, request, limits=self.limits)
        self.started = True
        self.expected += [request.message.id, request.assistant_message_id]
        waiter = asyncio.ensure_future(self._outcome(request.assistant_message_id))
        self.sent.append(Sent(request, waiter))

    async def interrupt(self) -> None:
        if self.started:
            with _unless_closed():
                await self.session.interrupt()

    async def approve(self, pick: int | None, approved: bool) -> None:
        """Answer the `pick`-th pending approval (any, modulo), or an unknown one."""
        if not self.started:
            return
        pending = (await self.session.info()).pending_approvals
        approval_id = (
            "approval-unknown" if pick is None or not pending else pending[pick % len(pending)]
        )
        try:
            with _unless_closed():
                await self.session.approve(approval_id, approved)
                if approval_id == "approval-unknown":
                    raise Violation("an unknown approval id was acknowledged")
                self.decisions[approval_id] = approved
            return
        except WorkflowUpdateFailedError as err:
            if update_error_type(err) != "ApprovalNotPending":
                raise Violation(
                    f"approving {approval_id} failed unexpectedly: {err.cause}"
                ) from err
            if approval_id == "approval-unknown":
                return
            return  # answered or ended meanwhile: a rejection, not an acknowledgement

    async def interrupt_and_approve(self, approved: bool) -> None:
        """A person approves as another stops the turn (two tabs): both at once."""
        if not self.started:
            return
        pending = (await self.session.info()).pending_approvals
        if not pending:
            return
        outcome = await asyncio.gather(
            self.session.interrupt(),
            self.session.approve(pending[0], approved),
            return_exceptions=True,
        )
        answer = outcome[1]
        if _closed(answer) or _closed(outcome[0]):
            return  # the session closed meanwhile: both were refused
        if isinstance(answer, WorkflowUpdateFailedError):
            if update_error_type(answer) != "ApprovalNotPending":
                raise Violation(f"approving failed unexpectedly: {answer.cause}")
        elif isinstance(answer, BaseException):
            raise answer
        else:
            self.decisions[pending[0]] = approved

    def rewind(self, pick: int, sandbox_id: str | None) -> None:
        if not self.started or not self.expected:
            return
        target = self.expected[pick % len(self.expected)]
        change = SessionUpdate(sandbox_id=sandbox_id, last_message_id=target)
        self._call("rewind", self.session.update(change), target=target)

    def use_sandbox(self, sandbox_id: str) -> None:
        if self.started:
            self._call("use sandbox", self.session.update(SessionUpdate(sandbox_id=sandbox_id)))

    def close(self) -> None:
        if self.started:
            self._call("close", self.session.close())

    def exec(self, command: str) -> None:
        if self.started:
            self._call("exec", self.session.exec(command))

    async def skip_time(self, seconds: float) -> None:
        """Skip virtual time; it takes no real time unless the server's clock is stuck
        (it sticks when a run ends in the middle of a workflow task: see `check`)."""
        if self.clock_lost:
            return
        try:
            await asyncio.wait_for(self.harness.env.sleep(seconds), SKIP_WITHIN)
        except TimeoutError:
            if not self.started:
                # No session yet, so none of its doing (the driver described the
                # workflow and failed on NOT_FOUND): the clock is the server's matter
                # (a previous example's, or a loaded machine), and lost here.
                self.clock_lost = True
                return
            await self.check()
            run = (await self.session.handle().describe()).run_id
            if "close done" in self.log or run != self.session.first_run:
                # A run that completes (closed) or continues as new while a send races
                # its last workflow task (the server then retries the task with the
                # send): the time-skipping server's clock sticks after that, every time,
                # while the session behaves (`check` above found nothing). Only the
                # clock is lost: time no longer skips in this example.
                self.clock_lost = True
                return
            raise Violation(f"skipping {seconds} s of time took over {SKIP_WITHIN} s") from None

    def _call(
        self, name: str, coroutine: Coroutine[Any, Any, Any], target: str | None = None
    ) -> None:
        task = asyncio.ensure_future(coroutine)
        call = Call(name, task, len(self.expected), target, made=_now())
        task.add_done_callback(lambda _: setattr(call, "finished", _now()))
        self.calls.append(call)

    async def _outcome(self, message_id: str) -> TurnOutcome:
        """What the client's `TurnHandle` does: `wait_turn` until it answers (None:
        the run continued as new, so ask the next one)."""
        handle = self.session.handle()
        deadline = asyncio.get_running_loop().time() + KNOWN_WITHIN
        while True:
            try:
                update = await handle.start_update(
                    "wait_turn",
                    message_id,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=TurnOutcome | None,
                )
                outcome: TurnOutcome | None = await self._result(update)
            except _LostWithItsRun:
                continue  # ask the newest run, which carried the outcome over
            except RPCError as err:
                # Accepted by a run that then continued as new, answering None there: the
                # update is not found on the newest run. Ask that one.
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
                continue
            except WorkflowUpdateFailedError as err:
                if update_error_type(err) in ASK_AGAIN:
                    await asyncio.sleep(0.05)
                    continue
                if update_error_type(err) != "MessageNotFound":
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise Violation(
                        f"the session acknowledged message {message_id} but does not know it"
                    ) from err
                await asyncio.sleep(0.02)
                continue
            if outcome is not None:
                return outcome

    async def _result(self, update: WorkflowUpdateHandle[Any]) -> Any:
        """The update's result, unless the test server lost it with its run.

        The time-skipping test server now and then continues a run as new (the next run
        starts, carrying the snapshot the workflow took) but keeps none of the events of
        that run's last workflow task: its history ends with the task STARTED, with no
        completion, no update completed and no CONTINUED_AS_NEW event, so a poll for an
        update that run accepted never answers. A real server writes the completion
        and the update's outcome with the continue-as-new, or answers the poll
        NOT_FOUND; the client then asks the newest run, as this does."""
        poll = asyncio.ensure_future(update.result())
        try:
            while True:
                done, _ = await asyncio.wait([poll], timeout=RESULT_PATIENCE)
                if done:
                    return poll.result()
                if await self._lost_with_its_run(update.id):
                    self.log.append(f"the test server lost update {update.id} with its run")
                    raise _LostWithItsRun()
        finally:
            poll.cancel()

    async def _lost_with_its_run(self, update_id: str) -> bool:
        """Whether a run that accepted `update_id` continued as new without a trace of
        its last workflow task (see `_result`)."""
        client = self.session.client
        run_id: str | None = None
        while True:
            handle = client.get_workflow_handle(self.session.workflow_id, run_id=run_id)
            events = [e async for e in handle.fetch_history_events()]
            accepted = any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
                and e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
                == update_id
                for e in events
            )
            if accepted:
                status = (await handle.describe()).status
                return (
                    status is WorkflowExecutionStatus.CONTINUED_AS_NEW
                    and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
                )
            started = events[0].workflow_execution_started_event_attributes
            if not started.continued_execution_run_id:
                return False
            run_id = started.continued_execution_run_id

    # -- what always holds --------------------------------------------------------------

    async def check(self) -> None:
        """What must hold between any two actions."""
        self._reap()
        if not self.started or self.task_lost:
            return
        handle = self.session.handle()
        description = await handle.describe()
        if description.status in (
            WorkflowExecutionStatus.FAILED,
            WorkflowExecutionStatus.TERMINATED,
            WorkflowExecutionStatus.TIMED_OUT,
        ):
            raise Violation(f"the session's run ended {description.status.name}")
        failures = workflow_task_failures(await self.session.history())
        if failures:
            raise Violation(f"a workflow task failed: {failures[0]}")
        # Two queries are two moments: a turn may start between them (a queued message,
        # once an update lets go of the lock), and its streaming reply would look like
        # one of an ended turn (the driver once reported that as "still streaming").
        # Judge the messages against an info that is the same before and after them.
        for _ in range(CONSISTENT_TRIES):
            info = await self.session.info()
            messages = await self.session.transcript()
            after = await self.session.info()
            if after == info:
                break
        else:
            info = info if info.busy else after
        self._check_transcript(messages, info)

    def _check_transcript(self, messages: list[Message], info: SessionInfo) -> None:
        ids = [m.id for m in messages]
        if len(set(ids)) != len(ids):
            raise Violation(f"duplicate message ids: {ids}")
        for index, message in enumerate(messages):
            if message.role is Role.ASSISTANT and (
                index == 0 or messages[index - 1].role is not Role.USER
            ):
                raise Violation(f"reply {message.id} does not follow a user message: {ids}")
            running = info.busy and index == len(messages) - 1
            if message.role is not Role.ASSISTANT or running:
                continue
            if message.status is MessageStatus.STREAMING:
                raise Violation(f"reply {message.id} of an ended turn is still streaming")
            for part in message.tool_parts():
                if part.state not in TERMINAL_TOOL_STATES:
                    raise Violation(
                        f"tool call {part.tool_call_id} of ended reply {message.id} is "
                        f"left {part.state.value}"
                    )
                approval = part.approval
                if approval is not None and approval.id in self.decisions:
                    decided = self.decisions[approval.id]
                    if approval.approved is not decided:
                        raise Violation(
                            f"approval {approval.id} was acknowledged ({decided}) but the "
                            f"tool call records {approval.approved} ({part.state.value})"
                        )

    def _reap(self) -> None:
        """Apply what finished update calls did to the model."""
        for call in [c for c in self.calls if c.task.done()]:
            self.calls.remove(call)
            error = call.task.exception()
            if error is not None:
                if not isinstance(error, WorkflowUpdateFailedError | RPCError):
                    raise error
                self.log.append(f"{call.name} failed: {_describe(error)}")
                continue
            self.log.append(f"{call.name} done")
            if call.name == "close" and call.after_close:
                continue
            if call.name == "close":
                # Closes made before this one was done were validated by the run it
                # closed and waited for the lock behind it: they find that run closed
                # and are done without closing anything else (the driver once cut
                # `expected` again for them, at a mark shifted to 0, and expected an
                # empty closed session).
                for other in self.calls:
                    if other.name == "close" and other.made < call.finished:
                        other.after_close = True
                # The closed run keeps answering queries until a send opens the next.
                self.closed = self.expected[: call.mark]
                self.expected = self.expected[call.mark :]
                self._shift(call.mark)
            elif call.name == "rewind":
                kept = self.expected[: call.mark]
                if call.target in kept:
                    cut = kept.index(call.target) + 1
                    self.expected = kept[:cut] + self.expected[call.mark :]
                    self._shift(call.mark - cut)

    def _shift(self, removed: int) -> None:
        for other in self.calls:
            other.mark = max(0, other.mark - removed)

    # -- what holds in the end ----------------------------------------------------------

    async def settle(self) -> None:
        """Release every hold and skip time until every send and call has answered;
        then the session is idle and holds exactly the model's messages."""
        self.release_holds()
        if self.task_lost:
            return
        for _ in range(ROUNDS):
            pending = [s.waiter for s in self.sent if not s.waiter.done()]
            pending += [c.task for c in self.calls]
            if not pending:
                break
            await asyncio.wait(pending, timeout=ROUND_WAIT)
            await self.check()  # a failed workflow task or run ends the wait
            if any(not t.done() for t in pending):
                await self.skip_time(ROUND_SKIP)
        else:
            if await self._task_dropped():
                self.task_lost = True
                return
            waiting = [s.request.assistant_message_id for s in self.sent if not s.waiter.done()]
            calls = [c.name for c in self.calls]
            stands = await where_it_stands(self.session)
            raise Violation(
                f"never answered after {ROUNDS * ROUND_SKIP:.0f} s: sends {waiting}, calls {calls}"
                f"; {stands}"
            )
        for sent in self.sent:
            error = sent.waiter.exception()
            if error is not None:
                raise error
        self._reap()
        if not self.started:
            return
        await self.check()
        info = await self.session.info()
        if info.busy or info.queued or info.pending_approvals:
            raise Violation(f"settled but not idle: {info}")
        ids = [m.id for m in await self.session.transcript()]
        closed = (await self.session.handle().describe()).status
        expected = self.closed if closed is WorkflowExecutionStatus.COMPLETED else self.expected
        if ids != expected:
            raise Violation(f"messages {ids}, expected {expected}")

    async def _task_dropped(self) -> bool:
        """Whether the time-skipping test server has lost the run's last workflow task:
        the run is open, its history ends with that task started, yet the server has no
        workflow task pending. The worker's completion of it was refused: a turn asked
        to cancel (interrupt) an activity that completed while the task ran, and the
        test server answers FAILED_PRECONDITION "ACTIVITY_UNKNOWN for scheduledEventId"
        (the worker logs it), where a real server accepts the request, the activity's
        completion being buffered (`AddActivityTaskCancelRequestedEvent`). The test
        server then neither times the task out nor schedules another: no workflow code
        can leave a run so, and nothing can be checked of it after that."""
        description = await self.session.handle().describe()
        if description.status is not WorkflowExecutionStatus.RUNNING:
            return False
        if description.raw_description.HasField("pending_workflow_task"):
            return False
        events = await self.session.history()
        return bool(events) and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED

    def release_holds(self) -> None:
        for hold in self.held:
            hold.release.set()

    async def final_send(self) -> None:
        """Whatever came before, a message sent now is answered. It interrupts what
        runs (`interruptIfStreaming`): a turn waiting for a person's approval would
        otherwise hold it back, as it should."""
        if self.task_lost:
            return
        fakes = self.harness.fakes
        fakes.steps.clear()
        fakes.scripts.clear()
        await self.send("are you still there?", interrupt=True)
        await self.settle()
        if self.task_lost:
            return
        outcome = self.sent[-1].waiter.result()
        if outcome.status.value != "finished":
            raise Violation(f"the last message was not answered: {outcome}")

    async def close_down(self) -> None:
        self.release_holds()
        for task in [*(s.waiter for s in self.sent), *(c.task for c in self.calls)]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _now() -> float:
    return asyncio.get_running_loop().time()


def _describe(error: BaseException) -> str:
    if isinstance(error, WorkflowUpdateFailedError):
        return f"{update_error_type(error)}: {error.cause}"
    return str(error)


# Refusals of `wait_turn` that mean "ask the newest run": this run continued as new
# after accepting the wait, or is about to.
ASK_AGAIN = frozenset({"AcceptedUpdateCompletedWorkflow", "SessionContinuing"})


def _closed(err: object) -> bool:
    """Whether `err` is Temporal refusing a call because the run has completed (the
    session was closed): a refusal, not an acknowledgement."""
    return isinstance(err, RPCError) and err.status is RPCStatusCode.NOT_FOUND


@contextlib.contextmanager
def _unless_closed() -> Iterator[None]:
    try:
        yield
    except RPCError as err:
        if not _closed(err):
            raise
