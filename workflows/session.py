"""SessionWorkflow: one durable workflow per agent session.

Messages arrive as `send` signals and queue in an inbox; the run loop answers them
one turn at a time. A turn alternates model-step activities and tool activities
until the model stops calling tools; each activity's result is recorded in history
before the next one starts, which is the session's per-step checkpoint. Tokens
never pass through here: activities stream them to Redis.

Only orchestration lives in this module (Temporal replays it): no I/O, no clocks,
no user code. Activities are called by name (`ActivityName`), so importing this
module does not import the activities' dependencies.
"""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from streams.chunks import Chunk, ErrorChunk, FinishChunk
    from workflows import policies
    from workflows.contract import (
        WORKFLOW_NAME,
        ActivityName,
        EnsureSandboxParams,
        FinishReason,
        ModelStepParams,
        ModelStepResult,
        PublishParams,
        RunToolParams,
        RunToolResult,
        SandboxRef,
        SendRequest,
        SessionInfo,
        SessionInput,
        SessionSnapshot,
        StepRef,
        TurnOutcome,
        TurnStatus,
    )
    from workflows.messages import Message, MessageStatus, Role, ToolCall, ToolState

ResultT = TypeVar("ResultT", bound=BaseModel)


@workflow.defn(name=WORKFLOW_NAME)
class SessionWorkflow:
    @workflow.init
    def __init__(self, input: SessionInput) -> None:
        snapshot = input.snapshot or SessionSnapshot()
        self._session_id = input.session_id
        self._agent = input.agent
        self._limits = input.limits
        self._messages = snapshot.messages
        self._inbox = snapshot.inbox
        self._usage = snapshot.usage
        self._outcomes = {o.message_id: o for o in snapshot.outcomes}
        self._sandbox_id = snapshot.sandbox_id
        self._current: str | None = None
        self._step = 0
        self._continuing = False

    @workflow.run
    async def run(self, input: SessionInput) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._inbox))
            request = self._inbox.pop(0)
            self._remember(await self._run_turn(request))
            if self._history_is_long():
                await self._continue_as_new()

    # -- handlers -------------------------------------------------------------------

    @workflow.signal(name="send")
    def send(self, request: SendRequest) -> None:
        """Queue a message; a duplicate delivery of the same message is ignored."""
        if not self._is_known(request.assistant_message_id):
            self._inbox.append(request)

    @workflow.query(name="messages")
    def messages(self, offset: int = 0, limit: int | None = None) -> list[Message]:
        end = None if limit is None else offset + limit
        return self._messages[offset:end]

    @workflow.query(name="info")
    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self._session_id,
            agent=self._agent,
            busy=self._current is not None,
            queued=len(self._inbox),
            message_count=len(self._messages),
            usage=self._usage,
            sandbox_id=self._sandbox_id,
        )

    @workflow.update(name="wait_turn")
    async def wait_turn(self, message_id: str) -> TurnOutcome | None:
        """Resolve when the turn answering `message_id` ends.

        Answers None when the session continues as new first; the caller asks the
        new run, which carries the inbox and the remembered outcomes.
        """
        await workflow.wait_condition(lambda: message_id in self._outcomes or self._continuing)
        return self._outcomes.get(message_id)

    @wait_turn.validator
    def _validate_wait_turn(self, message_id: str) -> None:
        if not self._is_known(message_id):
            raise ApplicationError(
                f"no message {message_id!r} in this session", type="MessageNotFound"
            )

    # -- a turn ---------------------------------------------------------------------

    async def _run_turn(self, request: SendRequest) -> TurnOutcome:
        self._messages.append(request.message)
        reply = Message(
            id=request.assistant_message_id, role=Role.ASSISTANT, status=MessageStatus.STREAMING
        )
        self._messages.append(reply)
        self._current = reply.id
        try:
            for step in range(self._limits.max_steps_per_turn):
                self._step = step
                result = await self._model_step(reply, step)
                reply.parts.extend(result.parts)
                self._usage = self._usage + result.usage
                if not result.tool_calls:
                    return self._end(reply, TurnStatus.FINISHED)
                for call in result.tool_calls:
                    await self._run_tool(reply, step, call)
            workflow.logger.warning(
                "turn hit the step limit of %d", self._limits.max_steps_per_turn
            )
            await self._publish(reply, [FinishChunk(finish_reason=FinishReason.LENGTH.value)])
            return self._end(reply, TurnStatus.FINISHED)
        except ActivityError as err:
            error = _describe(err)
            workflow.logger.warning("turn failed: %s", error)
            await self._publish(reply, [ErrorChunk(error_text=error)])
            return self._end(reply, TurnStatus.FAILED, error)
        finally:
            self._current = None

    async def _model_step(self, reply: Message, step: int) -> ModelStepResult:
        params = ModelStepParams(
            ref=self._ref(reply, step), messages=self._messages, sandbox_id=self._sandbox_id
        )
        return await self._activity(
            ActivityName.MODEL_STEP,
            params,
            ModelStepResult,
            policies.MODEL_STEP,
            summary=f"model step {step + 1}",
        )

    async def _run_tool(self, reply: Message, step: int, call: ToolCall) -> None:
        if self._sandbox_id is None:
            sandbox = await self._activity(
                ActivityName.ENSURE_SANDBOX,
                EnsureSandboxParams(ref=self._ref(reply, step), sandbox_id=None),
                SandboxRef,
                policies.SANDBOX_LIFECYCLE,
                summary="create sandbox",
            )
            self._sandbox_id = sandbox.sandbox_id
        result = await self._activity(
            ActivityName.RUN_TOOL,
            RunToolParams(
                ref=self._ref(reply, step),
                call=call,
                sandbox_id=self._sandbox_id,
                messages=self._messages,
            ),
            RunToolResult,
            policies.TOOL,
            summary=_tool_summary(call),
        )
        part = next(p for p in reply.tool_parts() if p.tool_call_id == call.tool_call_id)
        if result.error_text is not None:
            part.state, part.error_text = ToolState.OUTPUT_ERROR, result.error_text
        else:
            part.state, part.output = ToolState.OUTPUT_AVAILABLE, result.output

    def _end(self, reply: Message, status: TurnStatus, error: str | None = None) -> TurnOutcome:
        reply.status = {
            TurnStatus.FINISHED: MessageStatus.COMPLETE,
            TurnStatus.INTERRUPTED: MessageStatus.INTERRUPTED,
            TurnStatus.FAILED: MessageStatus.FAILED,
        }[status]
        return TurnOutcome(message_id=reply.id, status=status, error=error)

    # -- plumbing -------------------------------------------------------------------

    def _ref(self, reply: Message, step: int) -> StepRef:
        return StepRef(
            workflow_id=workflow.info().workflow_id,
            session_id=self._session_id,
            agent=self._agent,
            message_id=reply.id,
            step=step,
        )

    async def _activity(
        self,
        name: ActivityName,
        params: BaseModel,
        result_type: type[ResultT],
        preset: policies.ActivityPreset,
        *,
        summary: str,
    ) -> ResultT:
        result: ResultT = await workflow.execute_activity(
            name.value,
            params,
            result_type=result_type,
            start_to_close_timeout=preset.start_to_close,
            heartbeat_timeout=preset.heartbeat,
            retry_policy=preset.retry,
            summary=summary,
        )
        return result

    async def _publish(self, reply: Message, chunks: list[Chunk]) -> None:
        """Best effort: a lost chunk costs a live reader, never the session."""
        params = PublishParams(
            ref=self._ref(reply, self._step), chunks=[c.to_wire() for c in chunks]
        )
        try:
            await workflow.execute_local_activity(
                ActivityName.PUBLISH.value,
                params,
                start_to_close_timeout=policies.PUBLISH.start_to_close,
                retry_policy=policies.PUBLISH.retry,
                summary="publish",
            )
        except ActivityError as err:
            workflow.logger.warning("could not publish %d chunks: %s", len(chunks), err)

    def _is_known(self, message_id: str) -> bool:
        return (
            message_id == self._current
            or message_id in self._outcomes
            or any(r.assistant_message_id == message_id for r in self._inbox)
        )

    def _remember(self, outcome: TurnOutcome) -> None:
        self._outcomes[outcome.message_id] = outcome
        while len(self._outcomes) > self._limits.remembered_outcomes:
            del self._outcomes[next(iter(self._outcomes))]

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._limits.continue_as_new_after_events
            or info.get_current_history_size() >= self._limits.continue_as_new_after_bytes
        )

    async def _continue_as_new(self) -> None:
        self._continuing = True
        # Let `wait_turn` callers hear "continued" before this run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            SessionInput(
                session_id=self._session_id,
                agent=self._agent,
                limits=self._limits,
                snapshot=SessionSnapshot(
                    messages=self._messages,
                    inbox=self._inbox,
                    usage=self._usage,
                    outcomes=list(self._outcomes.values()),
                    sandbox_id=self._sandbox_id,
                ),
            )
        )


def _describe(err: ActivityError) -> str:
    cause: Any = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'Error'}: {cause.message}"
    return str(cause or err)


def _tool_summary(call: ToolCall) -> str:
    command = call.input.get("command")
    detail = command if isinstance(command, str) else ", ".join(sorted(call.input))
    detail = " ".join(detail.split())
    return f"{call.tool_name}: {detail[:80]}" if detail else call.tool_name
