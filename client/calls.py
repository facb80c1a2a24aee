"""Calls to one session's workflow, by method reference, with errors in our own words.

Signals, updates and queries are named by `SessionWorkflow`'s methods rather than by
strings, so a renamed handler fails type checking instead of production; the result
types come from the methods' annotations. Temporal's RPC errors and the workflow's
application errors come out as `sessionflow.errors` classes (one table: `errors.ALL`).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from pydantic_core import PydanticSerializationError
from temporalio.api.enums.v1 import EventType, TaskQueueType, WorkflowTaskFailedCause
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sessionflow import errors
from sessionflow.agents.definition import IdleTTL
from sessionflow.client.services import Services, ServicesRef
from sessionflow.connections import task_queue_pollers
from sessionflow.contract import SendRequest, SessionInput, SessionLimits
from sessionflow.workflows.session import SEND_SIGNAL, SessionWorkflow

# A query answers in milliseconds from a healthy session; longer means something is wrong.
QUERY_PATIENCE_SECONDS = 10.0
# How long a new session waits for a worker to poll its agent's task queue (one that is
# starting up) before the send is refused; and how long a queue seen polled is trusted.
WORKER_GRACE_SECONDS = 10.0
SERVED_MEMORY_SECONDS = 30.0
# Per Temporal client: task queue -> when a worker was last seen polling it.
_served: weakref.WeakKeyDictionary[Client, dict[str, float]] = weakref.WeakKeyDictionary()


def known_error(err: WorkflowUpdateFailedError) -> errors.SessionflowError | None:
    """The first application error in the cause chain that is one of ours."""
    cause: BaseException | None = err.cause
    while cause is not None:
        if isinstance(cause, ApplicationError):
            cls = errors.by_type(cause.type)
            if cls is not None:
                return cls(cause.message)
        cause = cause.cause if isinstance(cause, ApplicationError) else cause.__cause__
    return None


class SessionCalls:
    """Start, signal, update and query one session's workflow."""

    def __init__(
        self,
        services: ServicesRef,
        *,
        session_id: str,
        agent: str,
        workflow_id: str,
        idle_ttl: IdleTTL = "default",
    ):
        self._ref = services
        self._session_id = session_id
        self._agent = agent
        self.workflow_id = workflow_id
        # The agent's `idle_ttl`, when the client knows the agent.
        self._idle_ttl = idle_ttl

    def limits(self, services: Services) -> SessionLimits:
        """The new session's limits: the client's, with the agent's idle TTL (or the
        client's default for agents that set none), unless the limits set one."""
        limits = services.limits
        if "close_after_idle_seconds" in limits.model_fields_set:
            return limits
        ttl = services.idle_ttl if self._idle_ttl == "default" else self._idle_ttl
        return limits.model_copy(update={"close_after_idle_seconds": ttl})

    @property
    def agent(self) -> str:
        return self._agent

    @property
    def _task_queue(self) -> str:
        known = self._ref.known
        return known.queue_for(self._agent) if known is not None else "(not connected yet)"

    async def handle(self) -> WorkflowHandle[SessionWorkflow, None]:
        # No run id: after continue-as-new the newest run answers.
        services = await self._ref.get()
        return services.temporal.get_workflow_handle_for(SessionWorkflow.run, self.workflow_id)

    async def start(self, send: SendRequest | None = None, *, summary: str | None = None) -> None:
        """Start the workflow unless it runs, optionally with a first message
        (signal-with-start). The summary and details show in the Temporal UI."""
        services = await self._ref.get()
        signal: dict[str, Any] = (
            {"start_signal": SEND_SIGNAL, "start_signal_args": [send]} if send else {}
        )
        await self.served(services)
        try:
            await services.temporal.start_workflow(
                SessionWorkflow.run,
                SessionInput(
                    session_id=self._session_id,
                    agent=self._agent,
                    limits=self.limits(services),
                    search_attributes=services.search_attributes,
                ),
                id=self.workflow_id,
                # The agent's own queue: only workers that serve the agent get it.
                task_queue=services.queue_for(self._agent),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=summary or f"{self._agent}: session {self._session_id}",
                static_details=(
                    f"Session `{self._session_id}` of agent `{self._agent}` (Sessionflow)."
                ),
                **signal,
            )
        except RPCError as err:
            if err.status is RPCStatusCode.UNAVAILABLE:
                raise self.rpc_error(err) from err
            raise

    async def served(self, services: Services) -> None:
        """Return once a worker serves the session's agent, or the session runs already
        (wherever it runs: one started before per-agent queues runs on the shared one);
        raise `WorkerUnavailable` when no worker has polled the agent's task queue within
        `WORKER_GRACE_SECONDS`, rather than leave a new session waiting for one."""
        queue = services.queue_for(self._agent)
        seen = _served.setdefault(services.temporal, {})
        if time.monotonic() - seen.get(queue, -SERVED_MEMORY_SECONDS) < SERVED_MEMORY_SECONDS:
            return
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        while True:
            try:
                kind = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
                if await task_queue_pollers(services.temporal, queue, kind):
                    seen[queue] = time.monotonic()
                    return
                if await self.running():
                    return
            except RPCError as err:
                if err.status is RPCStatusCode.UNAVAILABLE:
                    raise self.rpc_error(err) from err
                return  # not allowed to ask (an API key's role): send, as before
            if time.monotonic() > deadline:
                raise errors.WorkerUnavailable(
                    f"no worker serves agent {self._agent!r} (task queue {queue!r}): start "
                    f"one with `sessionflow worker --agents <module>:<attr>` naming the agent"
                )
            await asyncio.sleep(0.1)

    async def running(self) -> bool:
        """Whether the session's newest run is running (False if it closed or never was)."""
        try:
            description = await (await self.handle()).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status is WorkflowExecutionStatus.RUNNING

    async def signal(self, method: Any) -> None:
        try:
            await (await self.handle()).signal(method)
        except RPCError as err:
            raise self.rpc_error(err) from err

    async def update(self, method: Any, *args: Any) -> Any:
        """Run an update; asks again while the session moves (continue-as-new, or off a
        dead worker's cache)."""
        while True:
            try:
                return await (await self.handle()).execute_update(method, args=list(args))
            except PydanticSerializationError as err:
                # The argument cannot be encoded for Temporal, e.g. an id with a lone
                # surrogate: the caller's input is at fault.
                raise errors.InvalidInput(
                    f"cannot send {method.__name__!r} to the session: {err}"
                ) from None
            except WorkflowUpdateFailedError as err:
                known = known_error(err)
                if known is not None:
                    raise known from err
                raise
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                # An update no workflow task accepts: say why when the task is failing.
                stuck = await self.stuck()
                if stuck is not None:
                    raise stuck from None
                raise
            except RPCError as err:
                if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                    if err.status is RPCStatusCode.NOT_FOUND and not await self.exists():
                        raise self.rpc_error(err) from err
                    stuck = await self.stuck()
                    if stuck is not None:
                        raise stuck from err
                    await asyncio.sleep(0.2)
                    continue
                if err.status is RPCStatusCode.UNAVAILABLE:
                    raise self.rpc_error(err) from err
                raise

    async def query(self, method: Any, *args: Any) -> Any:
        try:
            async with asyncio.timeout(QUERY_PATIENCE_SECONDS):
                return await (await self.handle()).query(method, args=list(args))
        except TimeoutError:
            stuck = await self.stuck()
            if stuck is not None:
                raise stuck from None
            raise errors.WorkerUnavailable(
                f"the session did not answer within {QUERY_PATIENCE_SECONDS:g} s; is a worker "
                f"serving agent {self._agent!r} (task queue {self._task_queue!r})?"
            ) from None
        except RPCError as err:
            if err.status is RPCStatusCode.FAILED_PRECONDITION:
                stuck = await self.stuck()
                if stuck is not None:
                    raise stuck from err
            raise self.rpc_error(err) from err

    async def stuck(self) -> errors.SessionStuck | None:
        """`SessionStuck` naming the cause when Temporal keeps failing the session's
        workflow task (workers are there, but cannot make progress), else None."""
        try:
            description = await (await self.handle()).describe()
        except RPCError:
            return None
        pending = description.raw_description.pending_workflow_task
        if pending.attempt < 2:
            return None
        cause = "see the workflow's history in the Temporal UI"
        async for event in (await self.handle()).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                failed = event.workflow_task_failed_event_attributes
                reason = WorkflowTaskFailedCause.Name(failed.cause).removeprefix(
                    "WORKFLOW_TASK_FAILED_CAUSE_"
                )
                cause = f"{reason}: {failed.failure.message}"[:2000]
        return errors.SessionStuck(
            f"session {self._session_id!r} cannot make progress: its workflow task has "
            f"failed {pending.attempt - 1} time(s) ({cause})"
        )

    async def exists(self) -> bool:
        """Whether the session has been started (asks the Temporal server, not a worker)."""
        try:
            await (await self.handle()).describe()
            return True
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise

    def rpc_error(self, err: RPCError) -> Exception:
        if err.status is RPCStatusCode.NOT_FOUND:
            return errors.SessionNotFound(
                f"no session {self._session_id!r} for agent {self._agent!r} "
                f"(workflow id {self.workflow_id!r})"
            )
        if err.status is RPCStatusCode.UNAVAILABLE:
            return errors.TemporalUnavailable(
                f"the Temporal server is unreachable ({err.message}); the session is "
                "safe on the server: try again once it is back"
            )
        if err.status is RPCStatusCode.FAILED_PRECONDITION:
            return errors.WorkerUnavailable(
                f"no worker serves agent {self._agent!r} (task queue {self._task_queue!r}): "
                f"start one with `sessionflow worker --agents <module>:<agent>` ({err.message})"
            )
        return err
