"""SessionWorkflow: one durable workflow per agent session.

Messages arrive as `send` signals and queue in an inbox; the run loop answers them
one turn at a time (`workflows.turn`). The session's durable state (messages,
agent state, usage, sandbox id) lives here and in history; tokens never do.

Only orchestration lives in this package (Temporal replays it): no I/O, no clocks,
no user code. Activities are called by name (`ActivityName`), so importing this
module does not import the activities' dependencies.

This class holds the session's state and its handlers (Temporal registers them by
name); each concept they draw on has a module of its own: the run's hand-over
(`handover`), the idle timer (`idle`), the sandbox (`sandboxes`), the transcript
store (`commits`), the ends of turns (`outcomes`), refusals (`refusals`), the end of
the session (`ending`), interrupt notices (`notices`), what operators see
(`visibility`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sessionflow.budgets import Spent
    from sessionflow.compaction import CompactionRecord, kept_compactions
    from sessionflow.contract import (
        WORKFLOW_NAME,
        ApprovalResponse,
        EraseOrder,
        ExecRequest,
        ExecResult,
        ForkRequest,
        IfBusy,
        MessagePage,
        ModelStepResult,
        PageRequest,
        SandboxStatus,
        SendRequest,
        SessionEnd,
        SessionInfo,
        SessionInput,
        SessionSnapshot,
        SessionStatus,
        SessionUpdate,
        StepRef,
        StepUsage,
        TranscriptRef,
        TranscriptView,
        TurnOutcome,
        TurnStatus,
        UsageReport,
    )
    from sessionflow.fragments import count_messages
    from sessionflow.messages import Message
    from sessionflow.workflows import (
        busy,
        cancels,
        commits,
        descriptions,
        ending,
        forks,
        handover,
        outcomes,
        pages,
        refusals,
        sandboxes,
        tracing,
        upgrade,
        visibility,
    )
    from sessionflow.workflows.idle import IdleTimer
    from sessionflow.workflows.notices import InterruptAnnouncer
    from sessionflow.workflows.turn import Turn
    from sessionflow.workflows.webhooks import Webhooks


# The first `send` starts the session with signal-with-start, whose API takes the
# signal's name rather than the method: this is that name.
SEND_SIGNAL = "send"


def _at_once(change: SessionUpdate) -> bool:
    """An update that changes only what takes effect at once, busy or not: the webhook
    URL, the session's own budget (a running turn meets it at its next step)."""
    return (change.webhook_url is not None or change.session_budget is not None) and (
        change.sandbox_id is None
        and change.last_message_id is None
        and change.max_steps_per_turn is None
    )


# Pinned: a session runs every workflow task on the build (Worker Deployment version)
# it started on, so a change to this code never replays a history other code recorded;
# changes need no `workflow.patched` branches (`sessionflow.worker.versions`).
@workflow.defn(name=WORKFLOW_NAME, versioning_behavior=VersioningBehavior.PINNED)
class SessionWorkflow:
    @workflow.init
    def __init__(self, input: SessionInput) -> None:
        snapshot = input.snapshot or SessionSnapshot()
        self.session_id = input.session_id
        self.agent = input.agent
        self.limits = input.limits
        # The committed transcript (in the payload store), then the fragments after it.
        self.transcript: TranscriptRef | None = snapshot.transcript
        self.tail: list[Message] = snapshot.messages
        self._commits = commits.Commits()
        self.inbox: list[SendRequest] = snapshot.inbox
        self.usage: UsageReport = snapshot.usage
        self.sandbox_id = snapshot.sandbox_id
        self.state = snapshot.state
        self.runs = snapshot.runs + 1
        self.model_activity = snapshot.model_activity
        # How the conversation is sent to the model (`sessionflow.compaction`).
        self.compactions = snapshot.compactions
        # The agent state as of recent messages, for forks (`workflows.forks`).
        self._states = snapshot.states
        self._searchable = input.search_attributes
        self.webhooks = Webhooks(
            input.session_id, input.agent, snapshot.webhooks, input.agent_webhook_url
        )
        # The model of the latest step, named in the next step's activity summary.
        self.last_model: str | None = None
        self._visibility = visibility.Visibility(
            input.session_id, input.agent, searchable=input.search_attributes
        )
        self._status = snapshot.status
        # Set once a cancel request (Temporal UI, `temporal workflow cancel`) was handled
        # as an interrupt: the run then continues as new (`workflows.cancels`).
        self._cancel_handled = False
        self._idle = IdleTimer()
        self.turn: Turn | None = None
        self._answers = outcomes.Answers(snapshot.outcomes)
        self._continuing = False
        # Messages handed over by the previous run are answered here before this run may
        # move to another build (`workflows.upgrade`): a run that could not move (an
        # operator's pinned override) never hands its messages on in a loop.
        self._may_move = not snapshot.inbox
        # Closing, closed or being deleted (`workflows.ending`).
        self._life = ending.Lifecycle()
        self.sandbox_paused = False
        # Held by whatever changes the conversation or the sandbox: a turn (from taking
        # its message to committing its answer), `update` and `close`, so none undoes
        # another (Temporal's safe-message-handlers pattern). Read-only handlers and
        # signals, which only queue, never wait for it.
        self._lock = asyncio.Lock()
        self._notices = InterruptAnnouncer()

    @property
    def status(self) -> SessionStatus:
        return self._status

    def set_status(self, value: SessionStatus) -> None:
        previous, self._status = self._status, value
        if value is SessionStatus.NEEDS_APPROVAL and self.turn is not None:
            # A turn asks for approvals (`Turn._ask_approval`, its pending ids set).
            reply = self.turn.reply.id
            self.webhooks.approval_requested(
                reply, self.turn.pending_ids(), outcomes.usage_of(self.usage, reply)
            )
        self._show(details_only={previous, value} == visibility.TOOL_FLIP)

    def _show(self, *, details_only: bool = False) -> None:
        """Show the session's state in the UI and its search attributes: as a turn
        starts and ends, and as approvals are asked for and answered."""
        self._visibility.show(
            self._status,
            tokens=self.usage.total.total_tokens,
            pending=len(self.turn.pending_ids()) if self.turn else 0,
            messages=self.message_count,
            details_only=details_only,
        )

    @workflow.run
    async def run(self, input: SessionInput) -> None:
        if input.erase is not None:
            await self._erase_ended(input.erase)
            return
        await cancels.serve_through_cancels(self._serve(), self._on_cancel_request)

    async def _on_cancel_request(self) -> None:
        """A cancel request is an interrupt; the run then continues as new, so the next
        cancel request reaches a fresh run (`workflows.cancels`)."""
        workflow.logger.info("cancel requested: interrupting the running turn, if any")
        self._cancel_handled = True
        if self.turn is not None:
            self.turn.interrupt()  # tells the running step's worker, as every interrupt

    async def _serve(self) -> None:
        if not self.inbox:
            self._show()  # else the turn that starts at once indexes the session
        while not self._life.closed:
            await self._wait_for_message()
            if self._life.closed:
                break
            if self._may_move and upgrade.due(self.limits):
                await self._continue_as_new()  # the next run, on the new build, answers
            if self._cancel_handled and not self._life.closing:
                await self._continue_as_new()  # a cancel request came while idle
                continue
            async with self._lock:
                # An update or close that held the lock may have changed things meanwhile.
                if self._life.ending or not self.inbox:
                    continue
                await self._take_turn(self.inbox.pop(0))
                self._may_move = True
            if (
                handover.history_is_long(self.limits) or self._cancel_handled
            ) and not self._life.closing:
                await self._continue_as_new()
        await self.webhooks.settled()
        # The run ends: it completes, or carries messages sent meanwhile to the next.
        # Waits for answers hear so (and ask the next run): a wait for a message still
        # queued here would otherwise keep its handler, and so this run, open for good.
        self._continuing = True
        # A run never ends under a handler still working (an exec, a close's answer).
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.inbox:
            # Sent while the session was closing: they open the next, empty session
            # under the same id, as a send after the close would have.
            await self._continue_as_new(SessionSnapshot(inbox=self.inbox))

    async def _take_turn(self, request: SendRequest) -> None:
        """Answer one message, and record the answer before anything else may change
        the conversation (the caller holds the lock)."""
        self.sandbox_paused = False  # the turn's first sandbox use resumes it
        before = busy.BeforeTurn.of(self.transcript, self.tail, self.state)
        self._remember_state(request.message.id)
        self.turn = turn = Turn(self, request)
        started = workflow.time_ns()
        try:
            outcome = await turn.run()
        finally:
            steps = turn.steps
            self.turn = None
            # Until its outcome is remembered (after the commit below), the answer is
            # still this session's: a wait for it is accepted, not MessageNotFound.
            self._answers.ending = request.assistant_message_id
        if turn.rolled_back:
            self.transcript, self.tail, self.state = before.transcript, before.tail, before.state
            outcome = TurnOutcome(message_id=outcome.message_id, status=TurnStatus.ROLLED_BACK)
        else:
            self._remember_state(outcome.message_id)
        tracing.report_turn(
            started,
            agent=self.agent,
            session_id=self.session_id,
            message_id=outcome.message_id,
            status=outcome.status.value,
            steps=steps,
        )
        await self.checkpoint(None)
        await outcomes.forget_context(request)
        self._answers.remember(outcome, self.limits.remembered_outcomes)
        self._answers.ending = None
        outcomes.count(outcome, self.agent)
        self.set_status(outcomes.STATUS_AFTER[outcome.status])
        reply = outcome.message_id
        self.webhooks.turn_finished(
            reply, outcome.status.value, outcomes.usage_of(self.usage, reply)
        )

    async def _wait_for_message(self) -> None:
        """Wait for the next message; pause the sandbox if none comes for a while, and
        close the session if none comes for `limits.close_after_idle_seconds`."""

        def ready() -> bool:
            waiting = bool(self.inbox) and not self._life.closing
            return waiting or self._life.closed or self._cancel_handled

        pausable = self.sandbox_id is not None and not self.sandbox_paused
        await self._idle.wait(
            ready,
            pause_after=self.limits.pause_sandbox_after_seconds if pausable else None,
            close_after=self.limits.close_after_idle_seconds,
            pause=self._pause_idle_sandbox,
            close=self._expire,
        )

    async def _pause_idle_sandbox(self) -> None:
        await sandboxes.pause_idle(self.sandbox_id)
        self.sandbox_paused = True  # asked once per idle period, paused or not

    async def _expire(self) -> None:
        """Close the session after its idle TTL, as `close` does; a sandbox that will
        not die leaves it open for another TTL."""
        async with self._lock:
            if self._life.ending or self.inbox or self.turn is not None:
                return  # a message came (or a close began) while this waited for the lock
            try:
                await self._life.close(self, SessionEnd.EXPIRED)
            except ApplicationError as err:
                workflow.logger.warning("could not close the idle session: %s", err)

    # -- signals --------------------------------------------------------------------

    @workflow.signal(name=SEND_SIGNAL, description=descriptions.SEND)
    def send(self, request: SendRequest) -> None:
        """Queue a message; a duplicate delivery of the same message is ignored, and so
        is any message while the session is being deleted."""
        if self._life.deleting or self._is_known(request.assistant_message_id):
            return
        self._admit(request)

    @workflow.update(name="send_message", description=descriptions.SEND_MESSAGE)
    def send_message(self, request: SendRequest) -> None:
        """Queue a message as the `send` signal does, applying its busy-session
        strategy (`workflows.busy`): the validator refuses a `reject` while busy, and
        this handler, run in the same step, interrupts or rolls back the running turn."""
        if self._life.deleting or self._is_known(request.assistant_message_id):
            return
        self._admit(request)

    def _admit(self, request: SendRequest) -> None:
        """Queue a message, first stopping the running turn if its strategy says so."""
        self.webhooks.set_session_url(request.webhook_url)
        if self.turn is not None:
            if request.if_busy is IfBusy.ROLLBACK:
                self.turn.roll_back()
            elif request.interrupt or request.if_busy is IfBusy.INTERRUPT:
                self.turn.interrupt(request.last_part)
        self.inbox.append(request)

    def _is_known(self, message_id: str) -> bool:
        """An answer of this session (`workflows.outcomes`): a repeat is dropped."""
        running = self.turn.reply.id if self.turn is not None else None
        return self._answers.known(message_id, running=running, inbox=self.inbox)

    @send_message.validator
    def _validate_send_message(self, request: SendRequest) -> None:
        refusals.refuse_if_continuing(self._continuing)
        if self._life.deleting or self._is_known(request.assistant_message_id):
            return  # dropped, or a repeat of a message already taken
        busy.refuse_if_rejected(request, turn_running=self.turn is not None, queued=len(self.inbox))

    @workflow.signal(name="interrupt", description=descriptions.INTERRUPT)
    def interrupt(self) -> None:
        """Stop the running turn, keeping what it produced; queued messages still run."""
        if self.turn is not None:
            self.turn.interrupt()

    # -- updates --------------------------------------------------------------------

    @workflow.update(name="wait_turn", description=descriptions.WAIT_TURN)
    async def wait_turn(self, message_id: str) -> TurnOutcome | None:
        """Resolve when the turn answering `message_id` ends.

        Answers None when the session continues as new first; the caller asks the
        new run, which carries the inbox and the remembered outcomes.
        """
        await workflow.wait_condition(
            lambda: self._answers.ended(message_id) or self._continuing or self._life.deleting
        )
        return self._answers.outcome(message_id)

    @wait_turn.validator
    def _validate_wait_turn(self, message_id: str) -> None:
        refusals.refuse_if_continuing(self._continuing)
        if not self._is_known(message_id):
            refusals.refuse_unknown(message_id)

    @workflow.update(name="approve", description=descriptions.APPROVE)
    def approve(self, response: ApprovalResponse) -> str:
        """Answer a pending tool approval; returns the id of the message it belongs to."""
        assert self.turn is not None  # the validator saw the approval pending
        self.turn.answer(response)
        return self.turn.reply.id

    @approve.validator
    def _validate_approve(self, response: ApprovalResponse) -> None:
        pending = self.turn is not None and self.turn.is_pending(response.approval_id)
        refusals.refuse_unless_pending(response.approval_id, pending)

    @workflow.update(name="update", description=descriptions.UPDATE)
    async def update(self, change: SessionUpdate) -> None:
        """Point the session at another (existing) sandbox, rewind its history so that
        `last_message_id` is the last message kept, and/or change its step cap. A
        message sent meanwhile waits and is answered after it. A change of the webhook
        URL or of the session's own budget alone takes effect at once, busy or not."""
        self.webhooks.set_session_url(change.webhook_url)
        if change.session_budget is not None:
            self.limits.session_budget = change.session_budget
        if _at_once(change):
            return
        async with self._lock:
            # Checked again: validated before it waited for the lock, while a close or
            # another rewind holding it may have ended the session or cut the message
            # this one keeps.
            refusals.refuse_if_closed(self._life.ending)
            refusals.refuse_if_not_kept(change.last_message_id, self.transcript, self.tail)
            if change.sandbox_id is not None:
                await self.use_sandbox(self.ref("", -1), change.sandbox_id)
            if change.last_message_id is not None:
                await self._rewind(change.last_message_id)
                self.compactions = kept_compactions(self.compactions, self.message_count())
            if change.max_steps_per_turn is not None:
                self.limits.max_steps_per_turn = change.max_steps_per_turn

    @update.validator
    def _validate_update(self, change: SessionUpdate) -> None:
        self._refuse_if_ending()
        refusals.refuse_if_busy(
            (self.turn is not None or bool(self.inbox)) and not _at_once(change),
            "cannot update the session while a turn runs or messages are queued",
        )
        refusals.refuse_if_not_kept(change.last_message_id, self.transcript, self.tail)

    @workflow.update(name="fork", description=descriptions.FORK)
    async def fork(self, request: ForkRequest) -> SessionSnapshot:
        """What a fork of this session starts from: its history up to
        `request.at_message_id` (the newest if None), by reference, and the agent state
        as of that message (`workflows.forks`). The client starts the fork with it."""
        async with self._lock:
            refusals.refuse_if_closed(self._life.ending)
            refusals.refuse_if_not_kept(request.at_message_id, self.transcript, self.tail)
            return await forks.fork_snapshot(
                request,
                transcript=self.transcript,
                tail=self.tail,
                states=self._states,
                state=self.state,
            )

    @fork.validator
    def _validate_fork(self, request: ForkRequest) -> None:
        self._refuse_if_ending()
        refusals.refuse_if_busy(
            self.turn is not None or bool(self.inbox),
            "cannot fork the session while a turn runs or messages are queued",
        )
        refusals.refuse_if_not_kept(request.at_message_id, self.transcript, self.tail)

    def _remember_state(self, message_id: str) -> None:
        limit = 2 * self.limits.remembered_outcomes
        forks.remember_state(self._states, message_id, self.state, limit)

    @workflow.update(name="close", description=descriptions.CLOSE)
    async def close(self) -> None:
        """End the session: its sandbox is killed, its stream ends and the workflow
        completes. If the sandbox cannot be killed the session stays open, and closing
        again retries."""
        async with self._lock:
            if self._life.closed:
                return  # a close (or the idle TTL) that held the lock first closed it
            await self._life.close(self, SessionEnd.CLOSED)

    @close.validator
    def _validate_close(self) -> None:
        refusals.refuse_if_continuing(self._continuing)
        refusals.refuse_if_busy(
            self.turn is not None or bool(self.inbox),
            "cannot close while a turn runs or messages are queued; interrupt first",
        )

    @workflow.update(name="delete", description=descriptions.DELETE)
    async def delete(self) -> None:
        """Erase the session: stop its turn (queued messages are dropped), kill its
        sandbox, erase its Redis keys and payload store objects, and complete; the
        client then deletes its Temporal runs. If a step fails the session stays open
        (empty of messages to answer), and deleting again retries."""
        self._life.start_deleting()
        self.inbox.clear()
        if self.turn is not None:
            self.turn.interrupt()
        async with self._lock:
            self.inbox.clear()
            await self._life.delete(self)

    @delete.validator
    def _validate_delete(self) -> None:
        refusals.refuse_if_continuing(self._continuing)

    async def _erase_ended(self, order: EraseOrder) -> None:
        """This run erases a session whose run had ended (`SessionInput.erase`)."""
        await ending.erase_all(self.session_id, self.agent, order.sandbox_id)

    @workflow.update(name="sandbox_exec", description=descriptions.SANDBOX_EXEC)
    async def sandbox_exec(self, request: ExecRequest) -> ExecResult:
        """Run a command in the session's sandbox, creating the sandbox if needed."""
        with self._life.exec_running():
            sandbox_id = await self.ensure_sandbox(self.ref("", -1))
            return await sandboxes.execute(self.ref("", -1), sandbox_id, request)

    @sandbox_exec.validator
    def _validate_sandbox_exec(self, request: ExecRequest) -> None:
        self._refuse_if_ending()

    def _refuse_if_ending(self) -> None:
        refusals.refuse_if_continuing(self._continuing)
        refusals.refuse_if_closed(self._life.ending)

    @workflow.update(name="sandbox_status", description=descriptions.SANDBOX_STATUS)
    async def sandbox_status(self) -> SandboxStatus | None:
        if self.sandbox_id is None:
            return None
        return await sandboxes.status(self.sandbox_id)

    # -- queries --------------------------------------------------------------------

    @workflow.query(name="transcript", description=descriptions.TRANSCRIPT)
    def transcript_view(self) -> TranscriptView:
        """Where the messages are: a reference to the committed transcript and the
        fragments after it (clients read pages from the payload store)."""
        return TranscriptView(
            transcript=self.transcript, tail=self.tail, message_count=self.message_count()
        )

    @workflow.query(name="messages", description=descriptions.MESSAGES)
    def messages(self, request: PageRequest | None = None) -> MessagePage:
        return pages.page(
            self.transcript, self.tail, self.message_count(), request or PageRequest()
        )

    @workflow.query(name="info", description=descriptions.INFO)
    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id,
            agent=self.agent,
            status=self.status,
            busy=self.turn is not None,
            queued=len(self.inbox),
            message_count=self.message_count(),
            usage=self.usage.total,
            sandbox_id=self.sandbox_id,
            pending_approvals=self.turn.pending_ids() if self.turn else [],
            run_count=self.runs,
        )

    @workflow.query(name="usage", description=descriptions.USAGE)
    def usage_report(self) -> UsageReport:
        return self.usage

    @workflow.query(name="state", description=descriptions.STATE)
    def state_query(self) -> dict[str, Any] | None:
        return self.state

    # -- what turns see (workflows.turn.TurnHost) -------------------------------------

    def begin(self, request: Message, reply: Message) -> None:
        self.tail.append(request)
        self.tail.append(reply)

    def message_count(self) -> int:
        if self.transcript is None:
            return count_messages(self.tail)
        return self.transcript.messages + count_messages(self.tail, self.transcript.last_id)

    async def checkpoint(self, reply: Message | None) -> Message | None:
        """Commit the uncommitted fragments once they are big enough (`workflows.commits`).
        Called between steps and after turns; returns the fragment the running `reply`
        continues in (a new one with the same id after a commit)."""
        ref = await self._commits.commit(
            self.transcript, self.tail, self.limits.commit_transcript_after_bytes
        )
        if ref is None:
            return reply
        self.transcript, self.tail = ref, []
        if reply is None:
            return None
        continued = commits.continued(reply)
        self.tail.append(continued)
        return continued

    async def _rewind(self, last_id: str) -> None:
        """Keep messages up to `last_id`: cut the uncommitted fragments, or point at a
        rewound copy of the committed transcript (older segments are shared)."""
        kept = [i for i, m in enumerate(self.tail) if m.id == last_id]
        if kept:
            del self.tail[kept[-1] + 1 :]
            return
        assert self.transcript is not None  # the validator checked the tail otherwise
        self.transcript, self.tail = await commits.rewound(self.transcript, last_id), []

    def announce_interrupt(self) -> None:
        """Tell the worker of the step just cancelled (`workflows.notices`)."""
        self._notices.announce()

    def approvals_changed(self) -> None:
        self._show()

    def spent(self) -> Spent:
        return self.usage.spent()

    def record_step(self, usage: StepUsage, result: ModelStepResult) -> None:
        self.last_model = result.model
        self.usage.add(usage, self.limits.remembered_step_usage, self.limits.remembered_outcomes)
        self.save_state(result.state)
        self.webhooks.learn_agent_url(result.webhook_url)
        if result.model_activity is not None:
            self.model_activity = result.model_activity

    def record_compaction(self, record: CompactionRecord, usage: StepUsage | None) -> None:
        self.compactions = kept_compactions([*self.compactions, record], None)
        if usage is not None:
            self.usage.add(usage, self.limits.remembered_step_usage)

    def save_state(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.state = state

    def ref(self, message_id: str, step: int) -> StepRef:
        return StepRef(
            workflow_id=workflow.info().workflow_id,
            session_id=self.session_id,
            agent=self.agent,
            message_id=message_id,
            step=step,
        )

    async def ensure_sandbox(self, ref: StepRef) -> str:
        if self.sandbox_id is None:
            return await self._ensure(ref, None, "create sandbox")
        return self.sandbox_id

    async def replace_sandbox(self, ref: StepRef, lost: str) -> str:
        """A new sandbox for one that vanished (a status chunk tells readers)."""
        return await self._ensure(ref, lost, f"recreate sandbox {lost}")

    async def use_sandbox(self, ref: StepRef, sandbox_id: str) -> str:
        """Point the session at an existing sandbox (SandboxNotFound if there is none)."""
        return await self._ensure(ref, sandbox_id, f"use sandbox {sandbox_id}", must_exist=True)

    async def _ensure(
        self, ref: StepRef, sandbox_id: str | None, summary: str, *, must_exist: bool = False
    ) -> str:
        self.sandbox_id = await sandboxes.ensure(ref, sandbox_id, summary, must_exist=must_exist)
        return self.sandbox_id

    # -- the hand-over to the next run (workflows.handover) ---------------------------

    def _snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            transcript=self.transcript,
            messages=self.tail,
            inbox=self.inbox,
            usage=self.usage,
            outcomes=self._answers.remembered(),
            sandbox_id=self.sandbox_id,
            state=self.state,
            model_activity=self.model_activity,
            runs=self.runs,
            compactions=self.compactions,
            states=self._states,
            webhooks=self.webhooks.targets,
            status=self._status,
        )

    async def _continue_as_new(self, snapshot: SessionSnapshot | None = None) -> None:
        """Carry the session to a new run (`workflows.handover`), once every handler
        has finished, so nothing acknowledged is left behind in this run."""
        self._continuing = True
        # Let `wait_turn` callers hear "continued" before this run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self.webhooks.settled()
        if self._life.deleting:
            return  # deleted meanwhile: nothing is carried on
        if snapshot is None:
            snapshot = self._snapshot()
        else:
            snapshot.inbox = self.inbox
        handover.hand_over(
            SessionInput(
                session_id=self.session_id,
                agent=self.agent,
                limits=self.limits,
                snapshot=snapshot,
                search_attributes=self._searchable,
            )
        )
