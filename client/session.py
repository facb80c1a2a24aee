"""The session handle: everything a backend does with one session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from client.inputs import new_message_id, user_message
from sessionflow.errors import SessionNotFound, WorkerUnavailable
from streams.reader import StreamEvent
from workflows.contract import (
    WORKFLOW_NAME,
    SendRequest,
    SessionInfo,
    SessionInput,
    TurnOutcome,
)
from workflows.ids import session_workflow_id
from workflows.messages import Message

if TYPE_CHECKING:
    from client.client import SessionClient


class TurnHandle:
    """Awaitable outcome of one turn: `outcome = await result.done`."""

    def __init__(self, session: Session, message_id: str) -> None:
        self._session = session
        self._message_id = message_id

    def __await__(self) -> Generator[Any, None, TurnOutcome]:
        return self._wait().__await__()

    async def _wait(self) -> TurnOutcome:
        while True:
            # No run id: after continue-as-new the newest run answers.
            handle = self._session._handle()
            try:
                outcome: TurnOutcome | None = await handle.execute_update(
                    "wait_turn",
                    self._message_id,
                    result_type=TurnOutcome | None,  # type: ignore[arg-type]
                )
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                continue
            except RPCError as err:
                # NOT_FOUND: the run we reached closed while continuing as new.
                # FAILED_PRECONDITION: the worker that had the session cached died;
                # the server moves it to another worker. Either way, ask again.
                if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                    await asyncio.sleep(0.2)
                    continue
                raise
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

    def __init__(self, client: SessionClient, session_id: str, agent: str) -> None:
        self._client = client
        self.id = session_id
        self.agent = agent
        self.workflow_id = session_workflow_id(agent, session_id)

    def _handle(self) -> WorkflowHandle[Any, Any]:
        return self._client.temporal.get_workflow_handle(self.workflow_id)

    async def send(self, message: str | Message | dict[str, Any]) -> SendResult:
        """Send a user message; the first send starts the session (signal-with-start).

        Messages sent while a turn runs are queued and answered in order.
        """
        request = SendRequest(message=user_message(message), assistant_message_id=new_message_id())
        await self._client.temporal.start_workflow(
            WORKFLOW_NAME,
            SessionInput(session_id=self.id, agent=self.agent, limits=self._client.limits),
            id=self.workflow_id,
            task_queue=self._client.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="send",
            start_signal_args=[request],
            static_summary=f"{self.agent} session {self.id}",
        )
        return SendResult(
            assistant_message_id=request.assistant_message_id,
            done=TurnHandle(self, request.assistant_message_id),
            session=self,
        )

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

    async def info(self) -> SessionInfo:
        result: SessionInfo = await self._query("info", [], SessionInfo)
        return result

    async def _query(self, name: str, args: list[Any], result_type: Any) -> Any:
        try:
            return await self._handle().query(name, args=args, result_type=result_type)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise SessionNotFound(
                    f"no session {self.id!r} for agent {self.agent!r} "
                    f"(workflow id {self.workflow_id!r})"
                ) from err
            if err.status is RPCStatusCode.FAILED_PRECONDITION:
                raise WorkerUnavailable(
                    f"no worker is serving task queue {self._client.task_queue!r}: "
                    f"start one with `sessionflow worker` ({err.message})"
                ) from err
            raise
