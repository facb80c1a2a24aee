"""Calls to one session's workflow, by method reference, with errors in our own words.

Signals, updates and queries are named by `SessionWorkflow`'s methods rather than by
strings, so a renamed handler fails type checking instead of production; the result
types come from the methods' annotations. Temporal's RPC errors and the workflow's
application errors come out as `sessionflow.errors` classes (one table: `errors.ALL`).

No call asks again without end: whether a session has ended is judged by its newest
run's status (`ended`), so a call on a closed, failed or terminated session raises
`SessionClosed` or `SessionFailed` at once; a session moving between runs is asked
again after a growing, jittered pause (`Backoff`), for a bounded time.
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
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import QueryRejectCondition, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from sessionflow import errors
from sessionflow.agents.definition import IdleTTL
from sessionflow.client.backoff import Backoff
from sessionflow.client.ended import ended_error, how_it_ended
from sessionflow.client.services import Services, ServicesRef
from sessionflow.connections import task_queue_pollers
from sessionflow.contract import (
    SendRequest,
    SessionInfo,
    SessionInput,
    SessionLimits,
    SessionSnapshot,
    SessionStatus,
)
from sessionflow.workflows.session import SEND_SIGNAL, SessionWorkflow

# A query answers in milliseconds from a healthy session; longer means something is wrong.
QUERY_PATIENCE_SECONDS = 10.0
# How long a new session waits for a worker to poll its agent's task queue (one that is
# starting up) before the send is refused; and how long a queue seen polled is trusted.
WORKER_GRACE_SECONDS = 10.0
SERVED_MEMORY_SECONDS = 30.0
# How long an update keeps asking a session that moves between runs (continue-as-new,
# a dead worker's cache) before it gives up; waits that are unbounded anyway pass None.
MOVE_PATIENCE_SECONDS = 60.0
# How many times a signal is sent to a session that was closed and reopened meanwhile.
SIGNAL_ATTEMPTS = 3
# What an update call can fail with that `SessionCalls._moving` sorts out.
_UPDATE_ERRORS = (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError)
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


def run_closed_first(err: WorkflowUpdateFailedError) -> bool:
    """Whether the run closed (completed, or continued as new) after accepting the
    update and before answering it."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == "AcceptedUpdateCompletedWorkflow"


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
        webhook_url: str | None = None,
        upgrade_on_new_build: bool | None = None,
    ):
        self._ref = services
        self._session_id = session_id
        self._agent = agent
        self.workflow_id = workflow_id
        # The agent's `idle_ttl`, when the client knows the agent.
        self._idle_ttl = idle_ttl
        # The agent's webhook URL, when the client knows the agent.
        self._webhook_url = webhook_url
        # The agent's `upgrade_on_new_build`, when the client knows the agent.
        self._upgrade_on_new_build = upgrade_on_new_build

    def limits(self, services: Services) -> SessionLimits:
        """The new session's limits: the client's, with the agent's idle TTL and
        `upgrade_on_new_build` (or the client's defaults for agents that set none),
        unless the limits set them."""
        limits = services.limits
        chosen: dict[str, Any] = {}
        if "close_after_idle_seconds" not in limits.model_fields_set:
            ttl = services.idle_ttl if self._idle_ttl == "default" else self._idle_ttl
            chosen["close_after_idle_seconds"] = ttl
        if "upgrade_on_new_build" not in limits.model_fields_set:
            upgrade = self._upgrade_on_new_build
            chosen["upgrade_on_new_build"] = (
                services.upgrade_on_new_build if upgrade is None else upgrade
            )
        return limits.model_copy(update=chosen)

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

    async def start(
        self, send: SendRequest | None = None, *, summary: str | None = None, reopen: bool = True
    ) -> None:
        """Start the workflow unless it runs, optionally with a first message
        (signal-with-start). The summary and details show in the Temporal UI.

        With `reopen=False` (calls that change a session but send no message) a session
        that never ran is started, but an ended one is not replaced by a new, empty run:
        that raises `SessionClosed` or `SessionFailed`. A `send` reopens a closed one
        (its run completed), never one that was terminated, failed or timed out
        (`SessionFailed`: delete it to start over)."""
        services = await self._ref.get()
        signal: dict[str, Any] = (
            {"start_signal": SEND_SIGNAL, "start_signal_args": [send]} if send else {}
        )
        if not reopen and await self._runs_or_ended():
            return
        await self.served(services)
        # A closed run is replaced only once it is known to have completed (a close, the
        # idle TTL): one terminated, failed or timed out is not silently replaced by an
        # empty session (`SessionFailed`). The common case (a running or new session)
        # costs the one call, as before.
        policy = WorkflowIDReusePolicy.REJECT_DUPLICATE
        for attempt in range(SIGNAL_ATTEMPTS):
            try:
                await self._start(services, signal, summary, policy)
                return
            except WorkflowAlreadyStartedError as err:
                ended = await self.ended()
                if ended is None:
                    if not reopen:
                        return  # a `send` reopened the session meanwhile, and it runs
                elif reopen and isinstance(ended, errors.SessionClosed):
                    policy = WorkflowIDReusePolicy.ALLOW_DUPLICATE  # reopen the closed one
                else:
                    raise ended from err
                if attempt == SIGNAL_ATTEMPTS - 1:
                    raise

    async def _start(
        self,
        services: Services,
        signal: dict[str, Any],
        summary: str | None,
        policy: WorkflowIDReusePolicy,
    ) -> None:
        try:
            await services.temporal.start_workflow(
                SessionWorkflow.run,
                self._start_input(services),
                id=self.workflow_id,
                # The agent's own queue: only workers that serve the agent get it.
                task_queue=services.queue_for(self._agent),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # Decided by the server, so no close can slip between a check and this.
                id_reuse_policy=policy,
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

    def _start_input(
        self, services: Services, snapshot: SessionSnapshot | None = None
    ) -> SessionInput:
        return SessionInput(
            session_id=self._session_id,
            agent=self._agent,
            limits=self.limits(services),
            search_attributes=services.search_attributes,
            snapshot=snapshot,
            agent_webhook_url=self._webhook_url,
        )

    async def start_fork(self, snapshot: SessionSnapshot, *, summary: str) -> None:
        """Start this session as a fork, from `snapshot`; `SessionExists` if a session
        runs under its id (one that ended is replaced, as a `send` would)."""
        services = await self._ref.get()
        await self.served(services)
        try:
            await services.temporal.start_workflow(
                SessionWorkflow.run,
                self._start_input(services, snapshot),
                id=self.workflow_id,
                task_queue=services.queue_for(self._agent),
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=summary,
                static_details=(
                    f"Session `{self._session_id}` of agent `{self._agent}` (Sessionflow)."
                ),
            )
        except WorkflowAlreadyStartedError as err:
            raise errors.SessionExists(
                f"session {self._session_id!r} already exists: fork into a new id"
            ) from err
        except RPCError as err:
            if err.status is RPCStatusCode.UNAVAILABLE:
                raise self.rpc_error(err) from err
            raise

    async def send_update(self, request: SendRequest, *, summary: str) -> None:
        """Send a message through the `send_message` update, starting the session if it
        does not run (update-with-start: as atomic as signal-with-start), so the session
        itself can refuse it (`TurnRunning` for `if_busy="reject"`) or stop its turn
        first. Asked again, after a pause, while the session moves between runs."""
        services = await self._ref.get()
        await self.served(services)
        backoff = Backoff()
        began = time.monotonic()
        while True:
            operation = WithStartWorkflowOperation(
                SessionWorkflow.run,
                self._start_input(services),
                id=self.workflow_id,
                task_queue=services.queue_for(self._agent),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=summary,
                static_details=(
                    f"Session `{self._session_id}` of agent `{self._agent}` (Sessionflow)."
                ),
            )
            try:
                await services.temporal.execute_update_with_start_workflow(
                    SessionWorkflow.send_message, request, start_workflow_operation=operation
                )
                return
            except _UPDATE_ERRORS as err:
                last = await self._moving(err)
            # The run hands over to the next, or closed after taking the update (a
            # repeat of the same message id is ignored by the session): again.
            if time.monotonic() - began >= MOVE_PATIENCE_SECONDS:
                raise self.gave_up(SessionWorkflow.send_message, MOVE_PATIENCE_SECONDS, last)
            await backoff.pause()

    async def _runs_or_ended(self) -> bool:
        """True if the session runs; raise if it has ended; False if it never ran.

        Asked before `served`, which would wait for a worker of a session that needs
        none: an ended session is refused at once."""
        try:
            ended = await self.ended()
        except errors.SessionNotFound:
            return False
        if ended is not None:
            raise ended
        return True

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
        """Signal the newest run; `SessionClosed`/`SessionFailed` when it has ended."""
        for attempt in range(SIGNAL_ATTEMPTS):
            try:
                await (await self.handle()).signal(method)
                return
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise self.rpc_error(err) from err
                ended = await self.ended()
                if ended is not None:
                    raise ended from err
                if attempt == SIGNAL_ATTEMPTS - 1:
                    raise self.rpc_error(err) from err
                # Running again (a `send` reopened it between the two): once more.

    async def update(
        self,
        method: Any,
        *args: Any,
        backoff: Backoff | None = None,
        patience: float | None = MOVE_PATIENCE_SECONDS,
    ) -> Any:
        """Run an update on the session's newest run.

        Asks again after a pause from `backoff` while the session moves: between runs
        (continue-as-new, or a run refusing with `SessionContinuing` while it hands
        over) or off a dead worker's cache; for `patience` seconds at most (None: as
        long as it takes, for a wait that has no bound of its own). Raises
        `SessionClosed` or `SessionFailed` as soon as the newest run has ended,
        `SessionNotFound` when there is none, `SessionStuck` when its task keeps failing.
        """
        backoff = backoff or Backoff()
        began = time.monotonic()
        while True:
            try:
                return await (await self.handle()).execute_update(method, args=list(args))
            except PydanticSerializationError as err:
                # The argument cannot be encoded for Temporal, e.g. an id with a lone
                # surrogate: the caller's input is at fault.
                raise errors.InvalidInput(
                    f"cannot send {method.__name__!r} to the session: {err}"
                ) from None
            except _UPDATE_ERRORS as err:
                last = await self._moving(err)
                # Moving, unless the run ended or is stuck (an update has no start).
                await self.raise_unless_moving(err)
            if patience is not None and time.monotonic() - began >= patience:
                raise self.gave_up(method, patience, last)
            await backoff.pause()

    async def _moving(self, err: Exception) -> Exception:
        """What a failed update call means: raised in our words, or returned when the
        session is moving between runs (a run handing over with `SessionContinuing`,
        one that closed after taking the update, or none found for a moment), to be
        asked again after a pause."""
        if isinstance(err, WorkflowUpdateFailedError):
            known = known_error(err)
            if known is not None and not isinstance(known, errors.SessionContinuing):
                raise known from err
            if known is None and not run_closed_first(err):
                raise err
            return known or err
        if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
            # An update no workflow task accepts: say why when the task is failing.
            stuck = await self.stuck()
            if stuck is not None:
                raise stuck from None
            raise err
        if isinstance(err, RPCError):
            if err.status is RPCStatusCode.UNAVAILABLE:
                raise self.rpc_error(err) from err
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                return err
        raise err

    async def raise_unless_moving(self, cause: Exception) -> None:
        """Return if the session runs (it moves between runs: ask again); raise
        `SessionNotFound`, `SessionClosed`/`SessionFailed` or `SessionStuck` if not."""
        description = await self.describe()
        ended = await ended_error((await self._ref.get()).temporal, description, self._session_id)
        if ended is not None:
            raise ended from cause
        stuck = await self.stuck(description)
        if stuck is not None:
            raise stuck from cause

    def gave_up(self, method: Any, patience: float, last: Exception) -> Exception:
        if isinstance(last, errors.SessionContinuing):
            return last  # retryable: the caller may try again later
        return errors.WorkerUnavailable(
            f"session {self._session_id!r} did not take {method.__name__!r} within "
            f"{patience:g} s: it kept moving between runs ({last}); is a worker serving "
            f"agent {self._agent!r} (task queue {self._task_queue!r})?"
        )

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

    async def query_info(self, method: Any) -> SessionInfo:
        """The `info` query, true to how the session's run ended: asked of an open run
        only (one call, as any query), and of a closed one again, its status then
        `closed` or `ended` and `ended` saying how (`client.ended`)."""
        try:
            async with asyncio.timeout(QUERY_PATIENCE_SECONDS):
                info: SessionInfo = await (await self.handle()).query(
                    method, reject_condition=QueryRejectCondition.NOT_OPEN
                )
                return info
        except WorkflowQueryRejectedError:
            pass
        except (TimeoutError, RPCError):
            info = await self.query(method)  # the same call, with the errors told as usual
            return info
        description = await self.describe()
        how = await how_it_ended((await self._ref.get()).temporal, description)
        info = await self.query(method)
        if how is None:
            return info  # running again: a `send` reopened it meanwhile
        status = SessionStatus.CLOSED if how == "closed" else SessionStatus.ENDED
        return info.model_copy(update={"status": status, "ended": how, "busy": False})

    async def describe(self) -> WorkflowExecutionDescription:
        """The newest run (`SessionNotFound` when the session never ran)."""
        try:
            return await (await self.handle()).describe()
        except RPCError as err:
            raise self.rpc_error(err) from err

    async def ended(self) -> errors.SessionEnded | None:
        """`SessionClosed` or `SessionFailed` when the newest run has ended, else None
        (it runs); `SessionNotFound` when the session never ran."""
        description = await self.describe()
        return await ended_error((await self._ref.get()).temporal, description, self._session_id)

    async def stuck(
        self, description: WorkflowExecutionDescription | None = None
    ) -> errors.SessionStuck | None:
        """`SessionStuck` naming the cause when Temporal keeps failing the session's
        workflow task (workers are there, but cannot make progress), else None."""
        if description is None:
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
            tenant, sep, own = self._session_id.partition(":")
            hint = (
                f"; it is tenant {tenant!r}'s session {own!r} at the gateway and the CLI"
                if sep
                else f"; a session the gateway or the CLI names {self._session_id!r} for "
                f"tenant T has the id 'T:{self._session_id}' here"
            )
            return errors.SessionNotFound(
                f"no session {self._session_id!r} for agent {self._agent!r} "
                f"(workflow id {self.workflow_id!r}){hint}"
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
