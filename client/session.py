"""The session handle: everything a backend does with one session."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from sessionflow import errors
from sessionflow.agents.definition import Agent
from sessionflow.budgets import Budget
from sessionflow.chunks import is_approval_status
from sessionflow.client.backoff import Backoff
from sessionflow.client.calls import SessionCalls
from sessionflow.client.deletion import delete_session
from sessionflow.client.inputs import (
    new_message_id,
    parse_approval,
    parse_budget,
    parse_if_busy,
    parse_send_input,
    validate_context,
    validate_send_options,
)
from sessionflow.client.interrupts import parse_interrupt
from sessionflow.client.sandbox import SessionSandbox
from sessionflow.client.schedules import ScheduleHandle, ScheduleInfo, Schedules
from sessionflow.client.services import Services, ServicesRef
from sessionflow.client.shared_waits import shared
from sessionflow.contract import (
    ApprovalResponse,
    ForkRequest,
    IfBusy,
    LastPart,
    SendRequest,
    SessionInfo,
    SessionSnapshot,
    SessionUpdate,
    TranscriptView,
    TurnOutcome,
    UsageReport,
)
from sessionflow.fragments import join_fragments
from sessionflow.ids import session_workflow_id, validate_session_id
from sessionflow.messages import Message
from sessionflow.streams.reader import StreamEvent, is_entry_id
from sessionflow.validation import describe
from sessionflow.webhooks import check_webhook_url
from sessionflow.workflows.session import SessionWorkflow

# How long `await result.outcome` keeps asking a Temporal server that does not answer.
TEMPORAL_OUTAGE_PATIENCE = 120.0


class TurnHandle:
    """Awaitable outcome of one turn: `outcome = await result.outcome`."""

    def __init__(self, session: Session, message_id: str) -> None:
        self._session = session
        self._message_id = message_id

    def __await__(self) -> Generator[Any, None, TurnOutcome]:
        return self._wait().__await__()

    async def _wait(self) -> TurnOutcome:
        # Every waiter on this answer in this process shares one update (shared_waits):
        # Temporal allows ten in flight per workflow.
        temporal = (await self._session._ref.get()).temporal
        key = (id(temporal), self._session.workflow_id, self._message_id)
        return await shared(key, self._ask)

    async def _ask(self) -> TurnOutcome:
        """Ask the newest run until it answers; never in a tight loop.

        `wait_turn` answers None when its run continued as new before the turn ended,
        and a run that is handing over refuses it (`SessionContinuing`): the next run,
        which remembers the outcome, is asked after a growing pause (`Backoff`), so a
        hand-over that waits minutes for a long `sandbox.exec` adds a few events, not
        thousands. An ended session raises `SessionClosed`/`SessionFailed` at once.
        A turn can also outlast a Temporal server restart: this waits it out (the SDK
        alone gives up after ~10 s) and raises `TemporalUnavailable` only after
        `TEMPORAL_OUTAGE_PATIENCE` seconds without the server.
        """
        calls = self._session._calls
        backoff = Backoff()
        unreachable_since: float | None = None
        while True:
            began = time.monotonic()
            try:
                # No patience bound: a turn may wait days for an approval, and the
                # calls in between are paced by the backoff.
                outcome: TurnOutcome | None = await calls.update(
                    SessionWorkflow.wait_turn, self._message_id, backoff=backoff, patience=None
                )
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled (e.g. by `asyncio.wait_for`): say so, as asyncio expects.
                    raise asyncio.CancelledError() from None
            except RPCError as err:
                # Ten updates in flight already (waiters in other processes, approvals):
                # this one waits its turn rather than failing.
                if err.status is not RPCStatusCode.RESOURCE_EXHAUSTED:
                    raise
            except errors.TemporalUnavailable:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= TEMPORAL_OUTAGE_PATIENCE:
                    raise
            else:
                if outcome is not None:
                    return outcome
                unreachable_since = None
            await backoff.pause(attempt_started=began)


class TurnDone:
    """Awaitable end of one turn: `await result.done` is True once the answer has
    ended, finished or not (`result.outcome` says how)."""

    def __init__(self, outcome: TurnHandle) -> None:
        self._outcome = outcome

    def __await__(self) -> Generator[Any, None, bool]:
        return self._wait().__await__()

    async def _wait(self) -> bool:
        await self._outcome
        return True


@dataclass(frozen=True)
class SendResult:
    """The answer's message id, known at once; when it has ended (`await done`, True)
    and how (`await outcome`, a `TurnOutcome`, truthy only when it finished)."""

    assistant_message_id: str
    outcome: TurnHandle
    session: Session

    @property
    def done(self) -> TurnDone:
        return TurnDone(self.outcome)

    def stream(self) -> AsyncIterator[StreamEvent]:
        """This answer's chunks, from its `start` to its end."""
        return self.session.stream(message_id=self.assistant_message_id)


class Session:
    """A handle on one session; creating it makes no network call.

    `services` may be a `ServicesRef` that connects on first use (`agent.session(id)`);
    the agent must then be given as an `Agent`, not by name."""

    def __init__(
        self, services: Services | ServicesRef, session_id: str, agent: str | Agent
    ) -> None:
        self._ref = services if isinstance(services, ServicesRef) else ServicesRef(services)
        self.id = session_id
        if isinstance(agent, str):
            known = self._ref.known
            if known is None:
                raise errors.InvalidInput("a session made before connecting needs the Agent")
            self._agent: Agent | None = known.agents.get(agent)
        else:
            self._agent = agent
        self.agent = agent if isinstance(agent, str) else agent.name
        self.workflow_id = session_workflow_id(self.agent, session_id)
        self._calls = SessionCalls(
            self._ref,
            session_id=session_id,
            agent=self.agent,
            workflow_id=self.workflow_id,
            idle_ttl=self._agent.idle_ttl if self._agent is not None else "default",
            webhook_url=self._agent.webhook_url if self._agent is not None else None,
            upgrade_on_new_build=(
                self._agent.upgrade_on_new_build if self._agent is not None else None
            ),
        )
        self.sandbox = SessionSandbox(self._calls)

    async def send(
        self,
        input: Any,
        *,
        interrupt_if_streaming: bool | LastPart | Mapping[str, Any] = False,
        context: Any = None,
        sandbox_id: str | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        if_busy: IfBusy | str | None = None,
        webhook_url: str | None = None,
    ) -> SendResult:
        """Send a user message or an approval; the first send starts the session.

        Messages sent while a turn runs queue and are answered in order, unless
        `interrupt_if_streaming` interrupts the running turn first (given as
        `{"last_part": {"index": i, "part": {...}}}`, the part the user last saw, the
        interrupted answer is cut there). `if_busy` picks what happens when a turn
        runs: `"enqueue"` (the default), `"reject"` (raise `TurnRunning`, nothing
        queued), `"interrupt"` (as `interrupt_if_streaming=True`) or `"rollback"` (the
        running turn is stopped and taken out of history, then this message runs); the
        session decides, atomically against a turn that ends at that moment. `context` is
        validated against the agent's `context_schema` (when the client knows the
        agent) and kept in Redis, never in Temporal. `budget` (a `Budget` or a dict of
        `input_tokens`, `output_tokens`, `cost`) limits this turn's model use; it can
        only tighten the agent's `turn_budget`. A turn that reaches it ends with outcome
        `budget_exceeded`. `webhook_url` gives the session a webhook URL of its own from
        this message on, instead of its agent's ("" for none). An approval returns the
        result of the turn it belongs to.
        """
        parsed = parse_send_input(input)
        if isinstance(parsed, ApprovalResponse):
            return await self.approve(parsed)
        interrupt, last_part = parse_interrupt(interrupt_if_streaming)
        strategy = parse_if_busy(if_busy, interrupt)
        interrupt = interrupt or strategy is IfBusy.INTERRUPT
        validate_send_options(interrupt, sandbox_id)
        turn_budget = parse_budget(budget)
        if webhook_url is not None:
            check_webhook_url(webhook_url, allow_empty=True)
        schema = self._agent.context_schema if self._agent else None
        data = validate_context(schema, context)
        services = await self._ref.get()
        context_ref = None if data is None else await services.contexts.put(self.workflow_id, data)
        request = SendRequest(
            message=parsed,
            assistant_message_id=new_message_id(),
            context_ref=context_ref,
            sandbox_id=sandbox_id,
            interrupt=interrupt,
            last_part=last_part,
            budget=turn_budget,
            if_busy=strategy,
            webhook_url=webhook_url,
        )
        title = " ".join(parsed.text().split())[:80] or "(no text)"
        # Before the signal: a reader without a cursor follows this answer from now on,
        # in this process or any other, even before it starts.
        reader, answer = services.reader, request.assistant_message_id
        previous = await reader.record_sent(self.workflow_id, answer)
        try:
            if strategy in (IfBusy.REJECT, IfBusy.ROLLBACK):
                # An update, so the session can refuse it or confirm the rollback.
                await self._calls.send_update(request, summary=f"{self.agent}: {title}")
            else:
                await self._calls.start(request, summary=f"{self.agent}: {title}")
        except BaseException:
            with contextlib.suppress(Exception):
                await reader.unrecord_sent(self.workflow_id, answer, previous)
            raise
        return self._result(answer)

    async def approve(self, response: ApprovalResponse | dict[str, Any]) -> SendResult:
        """Answer a pending tool approval; raises `ApprovalNotPending` for unknown ids.

        Takes an `ApprovalResponse` or the same dict as `send`'s approval; anything
        malformed is an `InvalidInput` raised here, before the workflow sees it.
        """
        message_id: str = await self._calls.update(
            SessionWorkflow.approve, parse_approval(response)
        )
        return self._result(message_id)

    def answer(self, message_id: str) -> SendResult:
        """The `SendResult` of an answer sent earlier, by this process or another (its
        `assistant_message_id`): to await its end or outcome, or stream it."""
        return self._result(message_id)

    async def interrupt(self) -> None:
        """Stop the running turn; its partial answer is kept, marked interrupted."""
        # One way, whoever interrupts: the workflow cancels the running step and tells
        # its worker to heartbeat now (`activities.interrupt_notice`).
        await self._calls.signal(SessionWorkflow.interrupt)

    async def close(self) -> None:
        """End the session: kills its sandbox and completes its workflow. A later
        `send` starts a new, empty session under the same id.

        Its history, usage and info can still be read while Temporal keeps the closed
        run; every other call on it (approve, interrupt, update, close again, sandbox
        commands, waits on its answers) raises `SessionClosed` at once, and on a
        session that failed or was terminated, `SessionFailed`."""
        await self._calls.update(SessionWorkflow.close)

    async def delete(self) -> None:
        """Erase the session everywhere it was stored: its running turn is stopped and
        queued messages dropped, its sandbox killed, its Redis keys, payload store
        objects and every Temporal run deleted. Afterwards it is unknown
        (`SessionNotFound`), and a `send` starts a new, empty session under the same
        id. Its schedules are deleted first, so none starts it again.
        `SessionNotFound` if there is no such session."""
        await Schedules(self._ref).delete_all(self.id, agent=self.agent)
        await delete_session(self._calls, await self._ref.get(), self.id)

    def stream(
        self, *, after: str | None = None, message_id: str | None = None, follow: bool = False
    ) -> AsyncIterator[StreamEvent]:
        """Chunks as they are published; see `StreamReader.read` for the cursor rules.

        Without `after` or `message_id`, the newest answer sent (by any process) is
        read from its start, waiting for it if it has not started yet.

        A malformed cursor is refused here, before anything is read."""
        if after is not None and not is_entry_id(after):
            raise errors.InvalidInput(f"{after!r} is not an event id (<ms>-<seq>)")
        known = self._ref.known
        if known is not None:
            return known.reader.read(
                self.workflow_id, after=after, message_id=message_id, follow=follow
            )
        return self._connect_and_read(after, message_id, follow)

    async def _connect_and_read(
        self, after: str | None, message_id: str | None, follow: bool
    ) -> AsyncIterator[StreamEvent]:
        services = await self._ref.get()
        events = services.reader.read(
            self.workflow_id, after=after, message_id=message_id, follow=follow
        )
        try:
            async for event in events:
                yield event
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def check_cursor(self, after: str | None) -> None:
        """Refuse, before streaming, a cursor `stream(after=...)` would only wait on:
        malformed (`InvalidInput`), or past the stream's newest chunk
        (`CursorOutOfRange`: forged, or from a stream that was lost or expired)."""
        if after is not None:
            await (await self._ref.get()).reader.check_cursor(self.workflow_id, after)

    async def waits_for_approval(self, event: StreamEvent | None = None) -> bool:
        """Whether the session's answer has stopped to ask for approvals and waits for a
        person to answer them: its newest chunk is the `needs-approval` status (`event`,
        when given, must be that chunk). A reader may stop there, and pick the answer up
        after the approvals with `stream_after_approvals`."""
        newest = await (await self._ref.get()).reader.newest_event(self.workflow_id)
        if newest is None or not is_approval_status(newest.chunk):
            return False
        return event is None or event.id == newest.id

    async def approval_point(self, message_id: str, approval_ids: Iterable[str]) -> str | None:
        """The event id where answer `message_id` stopped to ask for the approvals
        `approval_ids` (its `needs-approval` status): `stream(after=point,
        message_id=message_id)` reads the answer on from there, once they are answered.
        None when it asked for none of them."""
        reader = (await self._ref.get()).reader
        return await reader.approval_point(self.workflow_id, message_id, set(approval_ids))

    async def is_streaming(self) -> bool:
        """Whether an answer is being streamed right now (its `start` is out, its end
        is not)."""
        return await (await self._ref.get()).reader.is_active(self.workflow_id)

    async def history(self, *, offset: int = 0, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first, optionally one page of them.

        The workflow answers with a reference to its committed transcript and the few
        messages after it; the page is read from the payload store, fetching only the
        segments it needs (the newest page reads the newest segments).
        """
        view: TranscriptView = await self._calls.query(SessionWorkflow.transcript_view)
        if view.transcript is None:
            end = None if limit is None else offset + limit
            return join_fragments(view.tail)[offset:end]
        store = (await self._ref.get()).transcripts
        if store is None:
            raise errors.InvalidInput(
                "this session's transcript is in the payload store, and this client was "
                "connected without one: connect with SessionClient.connect(settings) or "
                "pass external_storage=... to connect_temporal"
            )
        return await store.messages(view.transcript, view.tail, offset=offset, limit=limit)

    async def update(
        self,
        *,
        sandbox_id: str | None = None,
        last_message_id: str | None = None,
        max_steps_per_turn: int | None = None,
        webhook_url: str | None = None,
        session_budget: Budget | Mapping[str, Any] | None = None,
    ) -> None:
        """Point the session at an existing sandbox, rewind its history so that
        `last_message_id` is the last message kept, and/or set the most model steps a
        turn may take from the next turn on (at least 1). Only while idle: a message
        sent meanwhile is answered after the change.

        `webhook_url` sets the URL this session's events go to instead of its agent's
        ("" for none); `session_budget` gives the session a budget of its own over its
        agent's `session_budget`, limit by limit (a `Budget` or the same as a dict:
        raise a spent limit to let the session go on, or lower one). Each, changed
        alone, takes effect at once, busy or not (a running turn meets a new budget at
        its next step). The gateway offers no way to set the budget: a tenant cannot
        lift what its agent allows; the operator does, here or with `sessionflow budget`."""
        if webhook_url is not None:
            check_webhook_url(webhook_url, allow_empty=True)
        try:
            change = SessionUpdate(
                sandbox_id=sandbox_id,
                last_message_id=last_message_id,
                max_steps_per_turn=max_steps_per_turn,
                webhook_url=webhook_url,
                session_budget=session_budget,
            )
        except ValidationError as err:
            raise errors.InvalidInput(f"update: {describe(err, SessionUpdate)}") from None
        # Starts a session that never ran; an ended one raises rather than reopen empty.
        await self._calls.start(reopen=False)
        await self._calls.update(SessionWorkflow.update, change)

    async def fork(self, new_id: str, *, at_message_id: str | None = None) -> Session:
        """Start a new session, `new_id`, whose history is this one's up to
        `at_message_id` (the newest message if None), with the same agent and the agent
        state as of that message; returns its handle. This session is left as it was.

        The fork refers to this session's stored transcript rather than copying it, so
        it costs the same however long the conversation is, and deleting this session
        later does not touch it (see `sessionflow.storage.namespaces`). It gets a fresh
        sandbox of its own on its first tool call (no backend copies workspaces yet).
        Only while idle (`SessionBusy`); `SessionExists` if `new_id` runs,
        `MessageNotFound` for a message this session does not have."""
        try:
            validate_session_id(new_id)
        except ValueError as err:
            raise errors.InvalidInput(f"new_id: {err}") from None
        fork = Session(self._ref, new_id, self._agent or self.agent)
        if fork.workflow_id == self.workflow_id:
            raise errors.InvalidInput("a fork needs an id of its own")
        if await fork._calls.running():
            raise errors.SessionExists(f"session {new_id!r} already exists: fork into a new id")
        request = ForkRequest(fork_workflow_id=fork.workflow_id, at_message_id=at_message_id)
        snapshot: SessionSnapshot = await self._calls.update(SessionWorkflow.fork, request)
        await fork._calls.start_fork(snapshot, summary=f"{self.agent}: fork of {self.id}")
        return fork

    # -- schedules --------------------------------------------------------------------

    async def schedule(
        self,
        message: str,
        *,
        every: timedelta | float | str | None = None,
        cron: str | None = None,
        name: str | None = None,
        if_busy: IfBusy | str = IfBusy.ENQUEUE,
        paused: bool = False,
    ) -> ScheduleHandle:
        """Send `message` to this session every `every` (`"15m"`, `"1h"`, seconds or
        a `timedelta`) or on a `cron` expression (UTC), with a Temporal Schedule;
        returns its handle (`pause`, `resume`, `trigger`, `delete`, `describe`). See
        `Schedules.create`."""
        return await Schedules(self._ref).create(
            self.id,
            message,
            agent=self.agent,
            every=every,
            cron=cron,
            name=name,
            if_busy=if_busy,
            paused=paused,
        )

    def get_schedule(self, name: str) -> ScheduleHandle:
        """This session's schedule `name` (no network call)."""
        return Schedules(self._ref).get(self.id, name, agent=self.agent)

    async def schedules(self) -> list[ScheduleInfo]:
        """This session's schedules (Temporal's listing lags a change by a moment)."""
        return await Schedules(self._ref).list(session_id=self.id, agent=self.agent)

    async def usage(self) -> UsageReport:
        """Tokens and cost (US dollars; None where a model has no price) per step and
        per turn (the recent ones), and totals, overall and by model."""
        result: UsageReport = await self._calls.query(SessionWorkflow.usage_report)
        return result

    async def state(self) -> Any:
        """The session's persisted state: a `state_schema` instance when the client knows
        the agent, else a dict (None before the first step)."""
        raw: dict[str, Any] | None = await self._calls.query(SessionWorkflow.state_query)
        schema = self._agent.state_schema if self._agent else None
        return schema.model_validate(raw) if schema is not None and raw is not None else raw

    async def info(self) -> SessionInfo:
        """The session at a glance. A session whose run has ended reports it: status
        `closed` (its run completed) or `ended` (terminated, failed, timed out), and
        `ended` says how, e.g. `terminated: runaway costs (by ops@example.com)`."""
        result: SessionInfo = await self._calls.query_info(SessionWorkflow.info)
        return result

    # -- plumbing -------------------------------------------------------------------

    def _result(self, message_id: str) -> SendResult:
        return SendResult(
            assistant_message_id=message_id, outcome=TurnHandle(self, message_id), session=self
        )

    async def exists(self) -> bool:
        """Whether the session has been started (asks the Temporal server, not a worker)."""
        return await self._calls.exists()
