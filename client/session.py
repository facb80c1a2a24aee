"""The session handle: everything a backend does with one session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError
from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import sessionflow.errors as errors
from sessionflow.client.inputs import (
    new_message_id,
    parse_approval,
    parse_send_input,
    validate_context,
    validate_send_options,
)
from sessionflow.client.sandbox import SessionSandbox
from sessionflow.contract import (
    WORKFLOW_NAME,
    ApprovalResponse,
    SendRequest,
    SessionInfo,
    SessionInput,
    SessionUpdate,
    TurnOutcome,
    UsageReport,
)
from sessionflow.ids import session_workflow_id
from sessionflow.messages import Message
from sessionflow.streams.reader import StreamEvent

if TYPE_CHECKING:
    from sessionflow.agents.definition import Agent
    from sessionflow.client.client import SessionClient

# Application error types raised by the workflow, as the client's exceptions.
_ERRORS: dict[str, type[errors.SessionflowError]] = {
    "ApprovalNotPending": errors.ApprovalNotPending,
    "MessageNotFound": errors.MessageNotFound,
    "SessionBusy": errors.SessionBusy,
    "SandboxNotFound": errors.SandboxNotFound,
    "InvalidInput": errors.InvalidInput,
}


def _known_error(err: WorkflowUpdateFailedError) -> errors.SessionflowError | None:
    """The first application error in the cause chain that the client has a class for."""
    cause: BaseException | None = err.cause
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type in _ERRORS:
            return _ERRORS[cause.type](cause.message)
        cause = cause.__cause__ if not hasattr(cause, "cause") else cause.cause
    return None


# How long `await result.done` keeps asking a Temporal server that does not answer.
TEMPORAL_OUTAGE_PATIENCE = 120.0


class TurnHandle:
    """Awaitable outcome of one turn: `outcome = await result.done`."""

    def __init__(self, session: Session, message_id: str) -> None:
        self._session = session
        self._message_id = message_id

    def __await__(self) -> Generator[Any, None, TurnOutcome]:
        return self._wait().__await__()

    async def _wait(self) -> TurnOutcome:
        # A turn can outlast a Temporal server restart; `done` waits it out (the SDK
        # alone gives up after ~10 s) and raises ConnectionFailed only after
        # TEMPORAL_OUTAGE_PATIENCE seconds without the server.
        unreachable_since: float | None = None
        while True:
            try:
                outcome: TurnOutcome | None = await self._session._update(
                    "wait_turn",
                    self._message_id,
                    TurnOutcome | None,
                )
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                continue
            except errors.TemporalUnavailable:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= TEMPORAL_OUTAGE_PATIENCE:
                    raise
                await asyncio.sleep(1.0)
                continue
            if outcome is not None:
                return outcome


@dataclass(frozen=True)
class SendResult:
    """The answer's message id, known at once, and the turn's outcome, awaitable."""

    assistant_message_id: str
    done: TurnHandle
    session: Session

    def stream(self) -> AsyncIterator[StreamEvent]:
        """This answer's chunks, from its `start` to its end."""
        return self.session.stream(message_id=self.assistant_message_id)


class Session:
    """A handle on one session; creating it makes no network call."""

    def __init__(self, client: SessionClient, session_id: str, agent: str | Agent) -> None:
        self._client = client
        self.id = session_id
        self._agent = agent if not isinstance(agent, str) else client.agents.get(agent)
        self.agent = agent if isinstance(agent, str) else agent.name
        self.workflow_id = session_workflow_id(self.agent, session_id)
        self.sandbox = SessionSandbox(self)

    def _handle(self) -> WorkflowHandle[Any, Any]:
        # No run id: after continue-as-new the newest run answers.
        return self._client.temporal.get_workflow_handle(self.workflow_id)

    async def send(
        self,
        input: Any,
        *,
        interrupt_if_streaming: bool = False,
        context: Any = None,
        sandbox_id: str | None = None,
    ) -> SendResult:
        """Send a user message or an approval; the first send starts the session.

        Messages sent while a turn runs queue and are answered in order, unless
        `interrupt_if_streaming` interrupts the running turn first. `context` is
        validated against the agent's `context_schema` (when the client knows the
        agent) and kept in Redis, never in Temporal. An approval returns the result
        of the turn it belongs to.
        """
        parsed = parse_send_input(input)
        if isinstance(parsed, ApprovalResponse):
            return await self.approve(parsed)
        validate_send_options(interrupt_if_streaming, sandbox_id)
        schema = self._agent.context_schema if self._agent else None
        data = validate_context(schema, context)
        context_ref = (
            None if data is None else await self._client.contexts.put(self.workflow_id, data)
        )
        request = SendRequest(
            message=parsed,
            assistant_message_id=new_message_id(),
            context_ref=context_ref,
            sandbox_id=sandbox_id,
            interrupt=interrupt_if_streaming,
        )
        title = " ".join(parsed.text().split())[:80] or "(no text)"
        try:
            await self._start(
                start_signal="send",
                start_signal_args=[request],
                static_summary=f"{self.agent}: {title}",
            )
        except RPCError as err:
            if err.status is RPCStatusCode.UNAVAILABLE:
                raise self._rpc_error(err) from err
            raise
        return self._result(request.assistant_message_id)

    async def approve(self, response: ApprovalResponse | dict[str, Any]) -> SendResult:
        """Answer a pending tool approval; raises `ApprovalNotPending` for unknown ids.

        Takes an `ApprovalResponse` or the same dict as `send`'s approval; anything
        malformed is an `InvalidInput` raised here, before the workflow sees it.
        """
        message_id: str = await self._update("approve", parse_approval(response), str)
        return self._result(message_id)

    async def interrupt(self) -> None:
        """Stop the running turn; its partial answer is kept, marked interrupted."""
        try:
            await self._handle().signal("interrupt")
        except RPCError as err:
            raise self._rpc_error(err) from err

    async def close(self) -> None:
        """End the session: kills its sandbox and completes its workflow. A later
        `send` starts a new, empty session under the same id."""
        await self._update("close", None, type(None))

    def stream(
        self, *, after: str | None = None, message_id: str | None = None, follow: bool = False
    ) -> AsyncIterator[StreamEvent]:
        """Chunks as they are published; see `StreamReader.read` for the cursor rules."""
        return self._client.reader.read(
            self.workflow_id, after=after, message_id=message_id, follow=follow
        )

    async def history(self, *, offset: int = 0, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first, optionally one page of them."""
        result: list[Message] = await self._query("messages", [offset, limit], list[Message])
        return result

    async def update(
        self, *, sandbox_id: str | None = None, last_message_id: str | None = None
    ) -> None:
        """Point the session at an existing sandbox, and/or rewind its history so that
        `last_message_id` is the last message kept (only while idle)."""
        change = SessionUpdate(sandbox_id=sandbox_id, last_message_id=last_message_id)
        await self._start()
        await self._update("update", change, type(None))

    async def usage(self) -> UsageReport:
        """Tokens per step (recent steps) and totals, overall and by model."""
        result: UsageReport = await self._query("usage", [], UsageReport)
        return result

    async def state(self) -> Any:
        """The session's persisted state: a `state_schema` instance when the client knows
        the agent, else a dict (None before the first step)."""
        raw: dict[str, Any] | None = await self._query("state", [], dict[str, Any] | None)
        schema = self._agent.state_schema if self._agent else None
        return schema.model_validate(raw) if schema is not None and raw is not None else raw

    async def info(self) -> SessionInfo:
        result: SessionInfo = await self._query("info", [], SessionInfo)
        return result

    # -- plumbing -------------------------------------------------------------------

    def _result(self, message_id: str) -> SendResult:
        return SendResult(
            assistant_message_id=message_id, done=TurnHandle(self, message_id), session=self
        )

    async def _start(self, **options: Any) -> None:
        """Start the session's workflow unless it runs, optionally with a signal. The
        summary (agent and first message) and details show in the Temporal UI."""
        options.setdefault("static_summary", f"{self.agent}: session {self.id}")
        await self._client.temporal.start_workflow(
            WORKFLOW_NAME,
            SessionInput(
                session_id=self.id,
                agent=self.agent,
                limits=self._client.limits,
                search_attributes=self._client.search_attributes,
            ),
            id=self.workflow_id,
            task_queue=self._client.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_details=f"Session `{self.id}` of agent `{self.agent}` (Sessionflow).",
            **options,
        )

    async def _update(self, name: str, arg: Any, result_type: Any) -> Any:
        while True:
            try:
                return await self._handle().execute_update(name, arg, result_type=result_type)
            except PydanticSerializationError as err:
                # The argument cannot be encoded for Temporal, e.g. a `last_message_id`
                # or `sandbox_id` with a lone surrogate: the caller's input is at fault.
                raise errors.InvalidInput(f"cannot send {name!r} to the session: {err}") from None
            except WorkflowUpdateFailedError as err:
                known = _known_error(err)
                if known is not None:
                    raise known from err
                raise
            except RPCError as err:
                # NOT_FOUND right after continue-as-new, or FAILED_PRECONDITION while the
                # session moves off a dead worker's cache: ask the new run/worker again.
                if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                    if err.status is RPCStatusCode.NOT_FOUND and not await self.exists():
                        raise self._rpc_error(err) from err
                    await asyncio.sleep(0.2)
                    continue
                if err.status is RPCStatusCode.UNAVAILABLE:
                    raise self._rpc_error(err) from err
                raise

    async def exists(self) -> bool:
        """Whether the session has been started (asks the Temporal server, not a worker)."""
        try:
            await self._handle().describe()
            return True
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise

    async def _query(self, name: str, args: list[Any], result_type: Any) -> Any:
        try:
            return await self._handle().query(name, args=args, result_type=result_type)
        except RPCError as err:
            raise self._rpc_error(err) from err

    def _rpc_error(self, err: RPCError) -> Exception:
        if err.status is RPCStatusCode.NOT_FOUND:
            return errors.SessionNotFound(
                f"no session {self.id!r} for agent {self.agent!r} "
                f"(workflow id {self.workflow_id!r})"
            )
        if err.status is RPCStatusCode.UNAVAILABLE:
            return errors.TemporalUnavailable(
                f"the Temporal server is unreachable ({err.message}); the session is "
                "safe on the server: try again once it is back"
            )
        if err.status is RPCStatusCode.FAILED_PRECONDITION:
            return errors.WorkerUnavailable(
                f"no worker is serving task queue {self._client.task_queue!r}: "
                f"start one with `sessionflow worker` ({err.message})"
            )
        return err
