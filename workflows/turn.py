"""One turn of a session: model steps and tool calls until the model stops.

Each step's activity result is recorded in history before the next starts (the
per-step checkpoint). An interrupt cancels the activity in flight through Temporal
(announced through Redis too, so the step heartbeats at once and notices within a
second; see `streams.interrupts`); a cancelled model step
returns what it produced so far, which is kept, and the turn ends with `abort`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from sessionflow.budgets import BudgetReached, Spent
    from sessionflow.chunks import (
        AbortChunk,
        Chunk,
        DataChunk,
        ErrorChunk,
        FinishChunk,
        ToolApprovalRequestChunk,
        ToolOutputDeniedChunk,
        ToolOutputErrorChunk,
        status_chunk,
    )
    from sessionflow.compaction import CompactionRecord, exclude_turn
    from sessionflow.contract import (
        INTERRUPTED_TEXT,
        ROLLED_BACK_TEXT,
        ActivityName,
        ActivitySettings,
        ApprovalResponse,
        FinishReason,
        LastPart,
        ModelStepParams,
        ModelStepResult,
        PublishParams,
        RunToolParams,
        RunToolResult,
        SendRequest,
        SessionLimits,
        SessionStatus,
        StepRef,
        StepUsage,
        TranscriptRef,
        TurnOutcome,
        TurnStatus,
    )
    from sessionflow.errors import ContextTooLarge, SandboxNotFound
    from sessionflow.messages import (
        DataPart,
        Message,
        MessageStatus,
        ReasoningPart,
        Role,
        TextPart,
        ToolApproval,
        ToolCall,
        ToolPart,
        ToolState,
    )
    from sessionflow.workflows import calls, compaction, policies

ResultT = TypeVar("ResultT", bound=BaseModel)

# A bound on compactions before one model step (each goes further than the last).
_MAX_COMPACTIONS_PER_STEP = 4


class TurnHost(Protocol):
    """What a turn may see and change of its session, and nothing more.

    The session owns its transcript, state, usage and sandbox; a turn asks it to
    record what each step produced instead of writing its fields.
    """

    @property
    def limits(self) -> SessionLimits: ...

    @property
    def transcript(self) -> TranscriptRef | None:
        """The committed transcript, by reference."""

    @property
    def tail(self) -> list[Message]:
        """The fragments after it, not committed yet (the running reply among them)."""

    @property
    def state(self) -> dict[str, Any] | None: ...

    @property
    def sandbox_id(self) -> str | None: ...

    @property
    def model_activity(self) -> ActivitySettings | None: ...

    @property
    def last_model(self) -> str | None: ...

    def ref(self, message_id: str, step: int) -> StepRef: ...

    def begin(self, request: Message, reply: Message) -> None:
        """Add the turn's user message and its (streaming) reply to the transcript."""

    def set_status(self, status: SessionStatus) -> None: ...

    async def checkpoint(self, reply: Message | None) -> Message | None:
        """Maybe commit the uncommitted fragments; the fragment `reply` continues in."""

    def announce_interrupt(self) -> None:
        """Tell the running step's worker that the step was just cancelled."""

    def approvals_changed(self) -> None:
        """The turn's pending approvals changed (the UI shows their count)."""

    def spent(self) -> Spent:
        """What the session has used so far, as its budget counts it."""

    def record_step(self, usage: StepUsage, result: ModelStepResult) -> None:
        """A model step's usage, its model, and the agent state and settings it saw."""

    def save_state(self, state: dict[str, Any] | None) -> None: ...

    @property
    def compactions(self) -> list[CompactionRecord]:
        """The compactions in force, newest last (it says how the conversation is sent)."""

    def record_compaction(self, record: CompactionRecord, usage: StepUsage | None) -> None:
        """A compaction made (and the summarising step's usage, if it had one)."""

    async def ensure_sandbox(self, ref: StepRef) -> str: ...

    async def replace_sandbox(self, ref: StepRef, lost: str) -> str: ...

    async def use_sandbox(self, ref: StepRef, sandbox_id: str) -> str: ...


class Turn:
    def __init__(self, session: TurnHost, request: SendRequest) -> None:
        self._session = session
        self._request = request
        self.reply = Message(
            id=request.assistant_message_id, role=Role.ASSISTANT, status=MessageStatus.STREAMING
        )
        self._step = 0
        # The transcript the latest model step saw; its tool calls see the same.
        self._seen: tuple[TranscriptRef | None, list[Message]] = (None, [])
        self._interrupting = False
        # Set by a send with if_busy="rollback": the session takes this turn out of
        # history once it has stopped (`workflows.busy`).
        self.rolled_back = False
        # Where the client asked to cut the answer when it interrupted, if it did.
        self._cut: LastPart | None = None
        # Parts of the answer already committed (in earlier fragments of the message).
        self._committed_parts = 0
        self._inflight: workflow.ActivityHandle[Any] | None = None
        # Approval id -> the index of the call it asks about in the step's calls, and
        # that index -> the answer: never the model's call id (see `_run_tools`).
        self._pending: dict[str, int] = {}
        self._answers: dict[int, ApprovalResponse] = {}
        self._asked: dict[int, ToolPart] = {}  # the parts of the calls asked about
        self._spent = Spent()  # what this turn's model steps used, for its budget
        # Something of the answer is in the stream (so its `start` chunk is).
        self._started = False

    # -- from handlers --------------------------------------------------------------

    def interrupt(self, cut: LastPart | None = None) -> None:
        self._interrupting = True
        self._cut = cut or self._cut
        if self._inflight is not None:
            self._inflight.cancel()
            self._session.announce_interrupt()

    def roll_back(self) -> None:
        """Stop the turn; the session then removes it from history."""
        self.rolled_back = True
        self.interrupt()

    def is_pending(self, approval_id: str) -> bool:
        return approval_id in self._pending

    @property
    def steps(self) -> int:
        """Model steps taken so far."""
        return self._step + 1

    def pending_ids(self) -> list[str]:
        return list(self._pending)

    def answer(self, response: ApprovalResponse) -> None:
        self._answers[self._pending.pop(response.approval_id)] = response
        self._session.approvals_changed()

    # -- the turn -------------------------------------------------------------------

    async def run(self) -> TurnOutcome:
        session = self._session
        session.begin(self._request.message, self.reply)
        session.set_status(SessionStatus.STREAMING)
        try:
            wanted = self._request.sandbox_id
            if wanted is not None and wanted != session.sandbox_id:
                await session.use_sandbox(session.ref(self.reply.id, 0), wanted)
            cap = max(1, session.limits.max_steps_per_turn)
            for step in range(cap):
                self._step = step
                # Between steps every part so far is final: commit them if large.
                continued = await session.checkpoint(self.reply) or self.reply
                if continued is not self.reply:
                    self._committed_parts += len(self.reply.parts)
                    self.reply = continued
                result = await self._model_step()
                if self._interrupting or result is None:
                    return await self._abort()
                if result.budget_reached is not None:
                    return await self._stop_at_budget(result.budget_reached)
                if not result.tool_calls:
                    return self._end(TurnStatus.FINISHED)
                await self._run_tools(result)
                if self._interrupting:
                    return await self._abort()
            return await self._stop_at_step_limit(cap)
        except ActivityError as err:
            error_type, error = describe_failure(err)
            workflow.logger.warning("turn failed: %s", error)
            if error_type == ContextTooLarge.__name__:
                exclude_turn(self.reply)  # or every next turn would fail the same way
            self.reply.metadata = {**(self.reply.metadata or {}), "error": error}
            self._close_open_tool_parts(error)
            await self._publish([ErrorChunk(error_text=error)])
            return self._end(TurnStatus.FAILED, error, error_type)

    async def _model_step(self) -> ModelStepResult | None:
        result = await self._call_model()
        # Each compaction goes further than the last, so this ends; bounded all the same.
        for _ in range(_MAX_COMPACTIONS_PER_STEP):
            if result is None or result.compact is None:
                break
            if not await compaction.compact_first(self, result.compact):
                return None
            result = await self._call_model()
        if result is not None and result.compact is None and result.budget_reached is None:
            self._spent = self._spent.add(result.usage)
            self.reply.parts.extend(result.parts)
            usage = StepUsage(
                message_id=self.reply.id, step=self._step, model=result.model, usage=result.usage
            )
            self._session.record_step(usage, result)
        return result

    async def _call_model(self) -> ModelStepResult | None:
        session = self._session
        self.see_transcript()
        result = await self._cancellable(
            ActivityName.MODEL_STEP,
            ModelStepParams(
                ref=session.ref(self.reply.id, self._step),
                transcript=self._seen[0],
                messages=self._seen[1],
                sandbox_id=session.sandbox_id,
                state=session.state,
                context_ref=self._request.context_ref,
                session_spent=session.spent(),
                turn_spent=self._spent,
                turn_budget=self._request.budget,
                session_budget=session.limits.session_budget,
                compaction=session.compactions[-1] if session.compactions else None,
                started=self._started,
            ),
            ModelStepResult,
            policies.MODEL_STEP,
            settings=session.model_activity,
            summary=f"model step {self._step + 1}"
            + (f": {session.last_model.partition('/')[2]}" if session.last_model else ""),
        )
        return result

    # -- what a compaction uses (workflows.compaction) ---------------------------------

    @property
    def host(self) -> TurnHost:
        return self._session

    @property
    def step(self) -> int:
        return self._step

    @property
    def context_ref(self) -> str | None:
        return self._request.context_ref

    def see_transcript(self) -> tuple[TranscriptRef | None, list[Message]]:
        """The transcript as it stands, for a step (and its tool calls) to see."""
        session = self._session
        # Shallow copies: parts of earlier steps never change, this step's are not in yet.
        self._seen = (
            session.transcript,
            [m.model_copy(update={"parts": list(m.parts)}) for m in session.tail],
        )
        return self._seen

    async def cancellable(
        self,
        name: ActivityName,
        params: BaseModel,
        result_type: type[ResultT],
        preset: policies.ActivityPreset,
        *,
        summary: str,
    ) -> ResultT | None:
        return await self._cancellable(name, params, result_type, preset, summary=summary)

    async def publish(self, chunks: list[Chunk]) -> None:
        await self._publish(chunks)

    async def _run_tools(self, result: ModelStepResult) -> None:
        """Run a step's calls in order. Each call is its part (by identity, never by the
        model's id, which a hostile model may repeat); an approval answers exactly the
        call it was asked for; a refused, denied or unanswered call never runs."""
        calls = result.tool_calls
        parts = [p for p in result.parts if isinstance(p, ToolPart)]
        flags = result.needs_approval or [False] * len(calls)
        refused = result.refused or [None] * len(calls)
        settings = result.tool_activity or [None] * len(calls)
        # Results recorded before the flag existed: every call had the sandbox made.
        sandboxed = result.uses_sandbox or [True] * len(calls)
        asked = [i for i, flag in enumerate(flags) if flag and refused[i] is None]
        if asked:
            await self._ask_approval([(i, calls[i], parts[i]) for i in asked])
        for i, call in enumerate(calls):
            if self._interrupting:
                return
            part = parts[i]
            if refused[i] is not None:
                part.state, part.error_text = ToolState.OUTPUT_ERROR, refused[i]
                await self._publish(
                    [ToolOutputErrorChunk(tool_call_id=part.tool_call_id, error_text=refused[i])]
                )
                continue
            answer = self._answers.pop(i, None)
            if i in asked:
                if answer is None:
                    continue  # never answered (the turn is ending): it does not run
                if not _apply_answer(part, answer):
                    await self._publish([ToolOutputDeniedChunk(tool_call_id=part.tool_call_id)])
                    continue
            await self._run_tool(call, part, settings[i], sandboxed[i])

    async def _ask_approval(self, asked: list[tuple[int, ToolCall, ToolPart]]) -> None:
        chunks: list[Chunk] = []
        for index, _call, part in asked:
            approval_id = f"approval-{workflow.uuid4().hex}"
            part.state = ToolState.APPROVAL_REQUESTED
            part.approval = ToolApproval(id=approval_id)
            self._pending[approval_id] = index
            self._asked[index] = part
            chunks.append(
                ToolApprovalRequestChunk(approval_id=approval_id, tool_call_id=part.tool_call_id)
            )
        chunks.append(status_chunk("needs-approval", approvals=len(asked)))
        self._session.set_status(SessionStatus.NEEDS_APPROVAL)  # also shows the pending count
        await self._publish(chunks)
        # Durable: the wait survives worker restarts and may last days.
        await workflow.wait_condition(
            lambda: not self._pending or self._interrupting,
        )
        self._session.set_status(SessionStatus.STREAMING)

    async def _run_tool(
        self, call: ToolCall, part: ToolPart, settings: ActivitySettings | None, sandboxed: bool
    ) -> None:
        session = self._session
        ref = session.ref(self.reply.id, self._step)
        # The sandbox is made for the first call of a tool that works in it; a tool
        # without one (plain Python) runs without, and never makes one.
        sandbox_id = await session.ensure_sandbox(ref) if sandboxed else None
        session.set_status(SessionStatus.RUNNING_TOOL)
        try:
            try:
                result = await self._tool_activity(call, sandbox_id, settings)
            except ActivityError as err:
                if sandbox_id is None or describe_failure(err)[0] != SandboxNotFound.__name__:
                    raise
                # The sandbox vanished (expired, deleted): make a new one, say so, go again.
                sandbox_id = await session.replace_sandbox(ref, sandbox_id)
                result = await self._tool_activity(call, sandbox_id, settings)
        except ActivityError as err:
            # Every attempt timed out (its worker lost, say): whether it acted is unknown.
            # That is the call's outcome, for the model to handle; the turn goes on.
            if not isinstance(err.cause, ActivityTimeout):
                raise
            workflow.logger.warning("tool call %s timed out: %s", part.tool_call_id, err.cause)
            result = RunToolResult(
                error_text=f"outcome unknown: the call timed out ({err.cause}) and may or "
                "may not have acted; check its effect before calling it again"
            )
        session.set_status(SessionStatus.STREAMING)
        if result is None or result.interrupted:
            kept = result.error_text if result is not None else None
            part.state, part.error_text = ToolState.OUTPUT_ERROR, kept or INTERRUPTED_TEXT
            return
        session.save_state(result.state)
        if result.error_text is not None:
            part.state, part.error_text = ToolState.OUTPUT_ERROR, result.error_text
        else:
            part.state, part.output = ToolState.OUTPUT_AVAILABLE, result.output

    async def _tool_activity(
        self, call: ToolCall, sandbox_id: str | None, settings: ActivitySettings | None
    ) -> RunToolResult | None:
        session = self._session
        return await self._cancellable(
            ActivityName.RUN_TOOL,
            RunToolParams(
                ref=session.ref(self.reply.id, self._step),
                call=call,
                sandbox_id=sandbox_id,
                transcript=self._seen[0],
                messages=self._seen[1],
                state=session.state,
                context_ref=self._request.context_ref,
            ),
            RunToolResult,
            policies.TOOL,
            settings=settings,
            summary=_tool_summary(call),
        )

    # -- endings --------------------------------------------------------------------

    async def _abort(self) -> TurnOutcome:
        self._cut_where_seen()
        self._close_open_tool_parts(INTERRUPTED_TEXT)
        reason = ROLLED_BACK_TEXT if self.rolled_back else INTERRUPTED_TEXT
        await self._publish([AbortChunk(reason=reason)])
        return self._end(TurnStatus.INTERRUPTED)

    async def _stop_at_step_limit(self, cap: int) -> TurnOutcome:
        """The model still wanted tools after `cap` steps: stop, and say so where the
        user looks (a note kept in the answer, and the turn's own outcome)."""
        workflow.logger.warning("turn hit the step limit of %d", cap)
        text = (
            f"Stopped after {cap} model steps, the limit for one turn; "
            "the answer may be incomplete. Send another message to continue."
        )
        return await self._stop_with_notice(
            {"kind": "step-limit", "steps": cap, "text": text}, TurnStatus.STEP_LIMIT
        )

    async def _stop_at_budget(self, reached: BudgetReached) -> TurnOutcome:
        """A budget was reached before the next model step: stop, as at the step limit,
        with a note naming the budget (`sessionflow.budgets`)."""
        workflow.logger.warning("turn stopped by its %s budget (%s)", reached.scope, reached.kind)
        data = {
            "kind": "budget-exceeded",
            "scope": reached.scope,
            "budget": reached.kind,
            "limit": reached.limit,
            "used": reached.used,
            "text": reached.text(),
        }
        return await self._stop_with_notice(data, TurnStatus.BUDGET_EXCEEDED)

    async def _stop_with_notice(self, data: dict[str, Any], status: TurnStatus) -> TurnOutcome:
        note = DataPart(type="data-notice", data=data)
        self.reply.parts.append(note)
        await self._publish(
            [
                DataChunk(type=note.type, data=note.data),
                FinishChunk(finish_reason=FinishReason.LENGTH.value),
            ]
        )
        return self._end(status)

    def _cut_where_seen(self) -> None:
        """Keep the answer up to the part the client showed last, and of a text or
        reasoning part only the text it showed (when that is how the part begins).
        Parts committed in earlier fragments stay: only the running one can be cut."""
        cut = self._cut
        if cut is None:
            return
        parts = self.reply.parts
        index = cut.index - self._committed_parts
        if index < 0:
            del parts[:]
            return
        if index >= len(parts):
            return
        del parts[index + 1 :]
        seen, shown = parts[index], cut.part.get("text")
        if not isinstance(seen, TextPart | ReasoningPart) or not isinstance(shown, str):
            return
        if len(shown) < len(seen.text) and seen.text.startswith(shown):
            seen.text = shown
            if isinstance(seen, ReasoningPart):
                seen.signature = None  # a signature covers the whole reasoning

    def _close_open_tool_parts(self, why: str) -> None:
        """Every tool call in history gets an outcome, so the next model step is valid;
        an answer a person gave is recorded even when its call never got to run."""
        self._pending.clear()
        for index, answer in self._answers.items():
            part = self._asked.get(index)
            if part is not None and _apply_answer(part, answer):
                part.state = ToolState.OUTPUT_ERROR
                part.error_text = f"{why} (approved, but the turn ended before it ran)"
        self._answers.clear()
        for part in self.reply.tool_parts():
            if part.state in (ToolState.INPUT_AVAILABLE, ToolState.APPROVAL_REQUESTED):
                part.state, part.error_text = ToolState.OUTPUT_ERROR, why

    def _end(
        self, status: TurnStatus, error: str | None = None, error_type: str | None = None
    ) -> TurnOutcome:
        self.reply.status = {
            TurnStatus.FINISHED: MessageStatus.COMPLETE,
            TurnStatus.STEP_LIMIT: MessageStatus.COMPLETE,
            TurnStatus.BUDGET_EXCEEDED: MessageStatus.COMPLETE,
            TurnStatus.INTERRUPTED: MessageStatus.INTERRUPTED,
            TurnStatus.ROLLED_BACK: MessageStatus.INTERRUPTED,
            TurnStatus.FAILED: MessageStatus.FAILED,
        }[status]
        return TurnOutcome(
            message_id=self.reply.id, status=status, error=error, error_type=error_type
        )

    # -- plumbing -------------------------------------------------------------------

    async def _cancellable(
        self,
        name: ActivityName,
        params: BaseModel,
        result_type: type[ResultT],
        preset: policies.ActivityPreset,
        *,
        summary: str,
        settings: ActivitySettings | None = None,
    ) -> ResultT | None:
        """Run an activity an interrupt may cancel; None if it was cancelled unfinished."""
        if self._interrupting:
            return None
        handle: workflow.ActivityHandle[ResultT] = calls.start(
            name, params, result_type, preset, summary=summary, settings=settings, cancellable=True
        )
        self._inflight = handle
        try:
            result: ResultT = await handle
            return result
        except ActivityError as err:
            if self._interrupting and isinstance(err.cause, CancelledError):
                return None
            raise
        except asyncio.CancelledError:
            # Interrupted before the activity was even scheduled (an interrupt or cancel
            # request in the same workflow task as the message): nothing ran. A worker
            # evicting the run cancels this task too, and that goes through.
            task = asyncio.current_task()
            if self._interrupting and handle.cancelled() and not (task and task.cancelling()):
                return None
            raise
        finally:
            self._inflight = None

    async def _publish(self, chunks: list[Chunk]) -> None:
        """Best effort: a lost chunk costs a live reader, never the session."""
        params = PublishParams(
            ref=self._session.ref(self.reply.id, self._step),
            chunks=[c.to_wire() for c in chunks],
        )
        try:
            await calls.local(ActivityName.PUBLISH, params, policies.PUBLISH, summary="publish")
            self._started = True  # the publish activity wrote the answer's `start` first
        except ActivityError as err:
            workflow.logger.warning("could not publish %d chunks: %s", len(chunks), err)


def _apply_answer(part: ToolPart, answer: ApprovalResponse) -> bool:
    """Record a person's answer on the call it was asked for; True if approved."""
    asked = part.approval.id if part.approval is not None else answer.approval_id
    part.approval = ToolApproval(id=asked, approved=answer.approved, reason=answer.reason)
    if not answer.approved:
        part.state = ToolState.OUTPUT_DENIED
        reason = f": {answer.reason}" if answer.reason else "."
        part.error_text = f"The user denied this tool call{reason}"
    return answer.approved


def describe_failure(err: ActivityError) -> tuple[str | None, str]:
    """An activity's failure: its error type (ours, if it is one) and one line."""
    cause: Any = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type, f"{cause.type or 'Error'}: {cause.message}"
    return None, str(cause or err)


def _tool_summary(call: ToolCall) -> str:
    command = call.input.get("command")
    detail = command if isinstance(command, str) else ", ".join(sorted(call.input))
    detail = " ".join(detail.split())
    return f"{call.tool_name}: {detail[:80]}" if detail else call.tool_name
