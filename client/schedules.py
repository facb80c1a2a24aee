"""Scheduled turns: a message sent to a session on an interval or a cron, with Temporal
Schedules (pause, resume, trigger, backfill, list and delete; visible in the Temporal
UI under Schedules).

A schedule can only start workflows, so each firing starts `ScheduledSendWorkflow` on
the agent's task queue, which sends the message (`activities.scheduled_send`). A
schedule belongs to one session and has a name there; its Temporal id is

    schedule:<agent>:<session id>:<name>

so a tenant's schedules carry its prefix as its sessions do (`acme:chat-1`), and the
memo names the session, agent, message and busy strategy for whoever looks in the UI.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleListDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.client import ScheduleHandle as TemporalScheduleHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from sessionflow import errors
from sessionflow.client.services import Services, ServicesRef
from sessionflow.contract import IfBusy, ScheduledSend
from sessionflow.ids import validate_agent_name, validate_session_id
from sessionflow.workflows import search
from sessionflow.workflows.scheduled_send import SCHEDULED_SEND_WORKFLOW_NAME

PREFIX = "schedule:"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EVERY = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_MESSAGE_CHARS = 32_000
# Firings missed while the server or the schedule's workers were away are caught up
# only within this window: a message is about now, not a backlog of the last days.
CATCHUP_WINDOW = timedelta(minutes=1)


def parse_every(value: timedelta | float | int | str) -> timedelta:
    """An interval: a `timedelta`, seconds, or text like `90s`, `15m`, `1h`, `2h30m`,
    `1d` (at least one second)."""
    if isinstance(value, timedelta):
        every = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        every = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            every = timedelta(seconds=float(text))
        except ValueError:
            parts = _EVERY.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise errors.InvalidInput(
                    f"an interval looks like 90s, 15m, 1h, 2h30m or 1d, not {value!r}"
                ) from None
            every = timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    else:
        raise errors.InvalidInput("an interval is a timedelta, seconds, or text like '1h'")
    if every < timedelta(seconds=1):
        raise errors.InvalidInput("a schedule's interval is at least one second")
    return every


def schedule_id(agent: str, session_id: str, name: str) -> str:
    if not _NAME.match(name):
        raise errors.InvalidInput(
            f"a schedule name is 1-64 letters, digits, '_' or '-', not {name!r}"
        )
    return f"{PREFIX}{validate_agent_name(agent)}:{validate_session_id(session_id)}:{name}"


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as Temporal describes it."""

    name: str
    session_id: str
    agent: str
    schedule_id: str
    message: str
    every: timedelta | None
    cron: str | None
    if_busy: str
    paused: bool
    note: str | None
    # When it fires next (a few), and when it fired last (None: never yet).
    next_runs: list[datetime]
    last_run: datetime | None


class ScheduleHandle:
    """One session's schedule, by name; no network call until used."""

    def __init__(self, services: ServicesRef, agent: str, session_id: str, name: str) -> None:
        self.agent = agent
        self.session_id = session_id
        self.name = name
        self.schedule_id = schedule_id(agent, session_id, name)
        self._ref = services

    async def _handle(self) -> TemporalScheduleHandle:
        temporal = (await self._ref.get()).temporal
        return temporal.get_schedule_handle(self.schedule_id)

    async def describe(self) -> ScheduleInfo:
        """`ScheduleNotFound` when there is no such schedule."""
        try:
            found = await (await self._handle()).describe()
        except RPCError as err:
            raise _rpc_error(err, self) from err
        memo = await found.memo()
        return _info(
            found.id,
            memo,
            found.schedule.state.paused,
            found.schedule.state.note,
            list(found.info.next_action_times),
            [a.scheduled_at for a in found.info.recent_actions],
        )

    async def pause(self, note: str | None = None) -> None:
        """Stop firing until `resume`."""
        handle = await self._handle()
        await self._call(handle.pause(note=note or "paused through Sessionflow"))

    async def resume(self) -> None:
        handle = await self._handle()
        await self._call(handle.unpause(note="resumed through Sessionflow"))

    async def trigger(self) -> None:
        """Fire once now (the schedule's busy strategy applies), paused or not."""
        await self._call((await self._handle()).trigger())

    async def delete(self) -> None:
        """Remove the schedule; messages it already sent stay in the session."""
        await self._call((await self._handle()).delete())

    async def _call(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except RPCError as err:
            raise _rpc_error(err, self) from err


class Schedules:
    """`client.schedules`: every session's schedules (a session handle's
    `schedule(...)` and `schedules()` are the same for one session)."""

    def __init__(self, services: Services | ServicesRef) -> None:
        self._ref = services if isinstance(services, ServicesRef) else ServicesRef(services)

    def get(self, session_id: str, name: str, *, agent: str) -> ScheduleHandle:
        """The session's schedule `name` (no network call)."""
        return ScheduleHandle(self._ref, agent, session_id, name)

    async def create(
        self,
        session_id: str,
        message: str,
        *,
        agent: str,
        every: timedelta | float | str | None = None,
        cron: str | None = None,
        name: str | None = None,
        if_busy: IfBusy | str = IfBusy.ENQUEUE,
        paused: bool = False,
    ) -> ScheduleHandle:
        """Send `message` to the session every `every` or on `cron` (one of the two).

        Args:
            session_id: the session (it starts on the first firing if it never ran).
            message: the text sent each time.
            agent: the session's agent (its workers run the firings).
            every: an interval (`timedelta`, seconds, or `"15m"`, `"1h"`, `"1d"`).
            cron: a cron expression (`"0 9 * * mon-fri"`), in UTC.
            name: the schedule's name in the session (default: a new random one).
            if_busy: what a firing does while the session is in a turn: `enqueue`
                (answered after it), `interrupt` (stops it first); `reject` and
                `rollback` are accepted and queue like `enqueue` for now.
            paused: create it paused.

        Raises:
            InvalidInput: a bad interval, cron, name, message or strategy, or a name
                the session already uses.
        """
        if (every is None) == (cron is None):
            raise errors.InvalidInput("give a schedule `every` or `cron`, one of the two")
        if not isinstance(message, str) or not message.strip():
            raise errors.InvalidInput("a scheduled message is non-empty text")
        if len(message) > MAX_MESSAGE_CHARS:
            raise errors.InvalidInput(
                f"a scheduled message is at most {MAX_MESSAGE_CHARS} characters"
            )
        try:
            strategy = IfBusy(if_busy)
        except ValueError:
            choices = ", ".join(s.value for s in IfBusy)
            raise errors.InvalidInput(f"if_busy is one of {choices}, not {if_busy!r}") from None
        name = name or f"sch-{secrets.token_hex(4)}"
        handle = self.get(session_id, name, agent=agent)
        spec = (
            ScheduleSpec(intervals=[ScheduleIntervalSpec(every=parse_every(every))])
            if every is not None
            else ScheduleSpec(cron_expressions=[_cron(cron)])
        )
        send = ScheduledSend(
            session_id=session_id, agent=agent, schedule=name, message=message, if_busy=strategy
        )
        memo = {
            "sessionflow": "schedule",
            "sessionId": session_id,
            "agent": agent,
            "name": name,
            "message": message,
            "ifBusy": strategy.value,
            # As given: Temporal describes a cron as calendars.
            "every": parse_every(every).total_seconds() if every is not None else None,
            "cron": cron,
        }
        services = await self._ref.get()
        attributes = (
            TypedSearchAttributes([SearchAttributePair(search.AGENT, agent)])
            if services.search_attributes
            else TypedSearchAttributes.empty
        )
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                SCHEDULED_SEND_WORKFLOW_NAME,
                send,
                id=f"scheduled:{agent}:{session_id}:{name}",
                task_queue=services.queue_for(agent),
                memo=memo,
                typed_search_attributes=attributes,
                static_summary=f"scheduled message to {session_id}",
            ),
            spec=spec,
            policy=SchedulePolicy(
                # The firing itself is a short send; the session's busy strategy
                # decides what a busy session does. `reject` skips a firing that
                # finds the previous one still sending.
                overlap=ScheduleOverlapPolicy.SKIP
                if strategy is IfBusy.REJECT
                else ScheduleOverlapPolicy.BUFFER_ONE,
                catchup_window=CATCHUP_WINDOW,
            ),
            state=ScheduleState(
                note=f"sends {' '.join(message.split())[:80]!r} to session {session_id}",
                paused=paused,
            ),
        )
        try:
            await services.temporal.create_schedule(
                handle.schedule_id, schedule, memo=memo, search_attributes=attributes
            )
        except ScheduleAlreadyRunningError:
            raise errors.InvalidInput(
                f"session {session_id!r} already has a schedule named {name!r}"
            ) from None
        except RPCError as err:
            raise _rpc_error(err, handle) from err
        return handle

    async def list(
        self,
        *,
        session_id: str | None = None,
        agent: str | None = None,
        prefix: str | None = None,
    ) -> list[ScheduleInfo]:
        """Schedules, by session id then name: of one session (`session_id`, with
        `agent`), of one agent, or of session ids starting with `prefix` (a tenant's
        `acme:`). Temporal's listing lags a create or delete by a moment."""
        rows: list[ScheduleInfo] = []
        async for found in self._listed(_narrowing(session_id, agent)):
            if not found.id.startswith(PREFIX):
                continue
            memo = await found.memo()
            if memo.get("sessionflow") != "schedule":
                continue
            if agent is not None and memo.get("agent") != agent:
                continue
            sid = str(memo.get("sessionId", ""))
            if session_id is not None and sid != session_id:
                continue
            if prefix is not None and not sid.startswith(prefix):
                continue
            schedule = found.schedule
            if schedule is None:
                continue
            rows.append(
                _info(
                    found.id,
                    memo,
                    schedule.state.paused,
                    schedule.state.note,
                    list(found.info.next_action_times) if found.info else [],
                    [a.scheduled_at for a in found.info.recent_actions] if found.info else [],
                )
            )
        return sorted(rows, key=lambda r: (r.session_id, r.name))

    async def _listed(self, query: str) -> AsyncIterator[ScheduleListDescription]:
        """Schedules the visibility query keeps (every one, where the server cannot
        filter schedules by id: the rows are checked by their memo anyway)."""
        temporal = (await self._ref.get()).temporal
        try:
            async for found in await temporal.list_schedules(query):
                yield found
        except RPCError as err:
            if err.status is not RPCStatusCode.INVALID_ARGUMENT:
                raise
            async for found in await temporal.list_schedules():
                yield found

    async def delete_all(self, session_id: str, *, agent: str) -> int:
        """Delete every schedule of a session (as Temporal lists them: one made a
        moment ago may be missed); how many. `Session.delete` calls it first."""
        deleted = 0
        for info in await self.list(session_id=session_id, agent=agent):
            try:
                await self.get(session_id, info.name, agent=agent).delete()
                deleted += 1
            except errors.ScheduleNotFound:
                pass  # deleted meanwhile
        return deleted


def _narrowing(session_id: str | None, agent: str | None) -> str:
    """A visibility query for schedule ids that may match (`list` checks each)."""
    start = PREFIX
    if agent is not None:
        start += f"{agent}:"
        if session_id is not None:
            start += f"{session_id}:"
    return f'ScheduleId STARTS_WITH "{start}"'


def _cron(cron: str | None) -> str:
    if not isinstance(cron, str) or not cron.strip() or len(cron) > 256:
        raise errors.InvalidInput("a cron expression is text like '0 9 * * mon-fri'")
    return cron.strip()


def _info(
    found_id: str,
    memo: Mapping[str, Any],
    paused: bool,
    note: str | None,
    next_runs: list[datetime],
    recent: list[datetime],
) -> ScheduleInfo:
    return ScheduleInfo(
        name=str(memo.get("name", "")),
        session_id=str(memo.get("sessionId", "")),
        agent=str(memo.get("agent", "")),
        schedule_id=found_id,
        message=str(memo.get("message", "")),
        every=timedelta(seconds=float(memo["every"])) if memo.get("every") else None,
        cron=str(memo["cron"]) if memo.get("cron") else None,
        if_busy=str(memo.get("ifBusy", IfBusy.ENQUEUE.value)),
        paused=paused,
        note=note,
        next_runs=next_runs[:5],
        last_run=max(recent) if recent else None,
    )


def _rpc_error(err: RPCError, handle: ScheduleHandle) -> Exception:
    if err.status is RPCStatusCode.NOT_FOUND:
        return errors.ScheduleNotFound(
            f"session {handle.session_id!r} has no schedule {handle.name!r}"
        )
    if err.status is RPCStatusCode.INVALID_ARGUMENT:
        return errors.InvalidInput(f"Temporal refused the schedule: {err.message}")
    if err.status is RPCStatusCode.UNAVAILABLE:
        return errors.TemporalUnavailable(f"the Temporal server is unreachable ({err.message})")
    return err
