"""Reading a session's stream: needs only Redis and the workflow id.

Entry ids are the resume cursors: a reader that passes back the last id it saw
gets exactly the chunks after it. With no cursor, a reader starts at the `start`
of the message it names or, naming none, of the newest assistant message a client
has *sent* (waiting for it when it has not started yet, e.g. queued behind the
answer before it), so a UI that reconnects rebuilds the message it was showing and
a reader right after a `send` gets the new answer, never the previous one.

What is already in the stream when a reader arrives (its backlog) is read first,
and output of attempts that a later retry superseded is left out of it, so a
replay shows each step once. Live readers get the `data-retry` announcement and
drop the superseded output themselves (`streams.assemble` does).

A reader survives Redis restarts and Redis Cluster failovers: on a connection error
(or CLUSTERDOWN, or its blocking read released by a primary turned replica) it
reconnects and goes on from the last entry it yielded, so its consumer sees a pause,
not an error or a gap. Only when Redis stays unreachable for `reconnect_seconds` does
it raise `StreamUnavailable` (the session's `history()` has the full record).

A session that ends (closed, expired, deleted) writes a last chunk,
`data-session-end`, and then its keys are deleted (`streams.erasure`): a reader yields
that chunk and stops, whatever it was reading. A reader that had read from the stream
and finds it gone stops too, so it never reads a later session under the same id as
the continuation of the ended one. A run that closed without ending its answer
(terminated from the Temporal UI, say) ends its readers too: a reader left waiting
asks whether the run still runs (`streams.ended_runs`, when the reader is given an
`EndedRuns`) and, if not, the run's end is written into the stream as an `error`
chunk, which the reader yields and stops at. On a
cluster, every command here names one key, or keys of one session (one hash tag, so
one slot): each goes to the primary of the session's slot, a blocking XREAD included.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from sessionflow.chunks import (
    SESSION_END_TYPE,
    TERMINAL_TYPES,
    Chunk,
    ErrorChunk,
    is_approval_status,
    parse_chunk,
)
from sessionflow.errors import CursorOutOfRange, InvalidInput, StreamUnavailable
from sessionflow.streams.backoff import Backoff, is_unreachable
from sessionflow.streams.ended_runs import RUN_END_SOURCE, EndedRuns
from sessionflow.streams.erasure import erase_keys
from sessionflow.streams.keys import (
    CLIENT_WRITE_TTL_SECONDS,
    LATEST_SENT,
    LATEST_STARTED,
    StreamKeys,
)

_PAGE = 1000
# Told a reader's cursor and how long it has waited since its last entry, when a
# blocking read comes back empty: None to wait on, or the last events before it stops.
_OnIdle = Callable[[str, float], Awaitable["list[StreamEvent] | None"]]

# Record a sent message id and return the one it replaced, in one step.
# KEYS: index hash. ARGV: the message id, the field name, the index's lifetime (s).
_RECORD_SCRIPT = """
local previous = redis.call('HGET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return previous
"""

# Put back the previous "sent" id, unless another send has recorded its own since.
# KEYS: index hash. ARGV: our message id, the previous id ("" if none), the field name.
_UNRECORD_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[3]) == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('HDEL', KEYS[1], ARGV[3])
  else
    redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
  end
end
return 0
"""


@dataclass(frozen=True)
class StreamEvent:
    """One chunk with its entry id (the SSE event id) and where it belongs."""

    id: str
    chunk: Chunk
    message_id: str
    step: int
    attempt: int
    source: str = "model"

    @property
    def type(self) -> str:
        return self.chunk.type


def id_before(entry_id: str) -> str:
    """The greatest possible entry id below `entry_id`, for inclusive reads with XREAD."""
    ms, _, seq = entry_id.partition("-")
    if int(seq or 0) > 0:
        return f"{ms}-{int(seq) - 1}"
    if int(ms) == 0:
        return "0-0"
    return f"{int(ms) - 1}-18446744073709551615"


_U64_MAX = 2**64 - 1


def is_entry_id(value: str) -> bool:
    """A Redis stream entry id usable as a cursor: `<ms>[-<seq>]`, unsigned 64-bit.

    ASCII digits only (`str.isdigit` also accepts "²" or Arabic-Indic digits) and in
    range; the greatest id is refused too, since nothing can come after it. Redis
    would reject all of these, and a reader would fail on its first read."""
    ms, sep, seq = value.partition("-")
    parts = (ms, seq) if sep else (ms,)
    if not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts):
        return False
    numbers = tuple(int(p) for p in parts)
    return max(numbers) <= _U64_MAX and numbers != (_U64_MAX, _U64_MAX)


def entry_key(entry_id: str) -> tuple[int, int]:
    """An entry id (`is_entry_id` holds) as numbers, to order ids; `<ms>` is `<ms>-0`."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def without_superseded(events: list[StreamEvent]) -> list[StreamEvent]:
    """Drop output of attempts that a later attempt of the same step and source replaced."""
    latest: dict[tuple[str, int, str], int] = {}
    for event in events:
        key = (event.message_id, event.step, event.source)
        latest[key] = max(latest.get(key, 0), event.attempt)
    return [e for e in events if e.attempt >= latest[(e.message_id, e.step, e.source)]]


class StreamReader:
    """Reads chunks from per-session Redis streams."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str = "sf",
        block_ms: int = 2_000,
        reconnect_seconds: float = 30.0,
        ended_runs: EndedRuns | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._block_ms = block_ms
        self._reconnect_seconds = reconnect_seconds
        # Asked by a waiting reader whether the session's run has closed (None: never).
        self._ended_runs = ended_runs

    async def read(
        self,
        workflow_id: str,
        *,
        after: str | None = None,
        message_id: str | None = None,
        follow: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """Yield a session's chunks as they arrive.

        Args:
            workflow_id: the session's workflow id.
            after: resume after this entry id; without it, start at the beginning
                of `message_id` or, if that is None too, of the newest message a
                client sent (see `record_sent`), else the newest that started.
            message_id: read only this assistant message (waiting for it to start).
            follow: keep reading across messages instead of ending after the
                message's `finish`, `abort` or `error`; without `after`, from the
                start of the message (earlier messages' chunks are skipped).

        When the session's run has closed without ending the answer (`EndedRuns`),
        the reader yields the `error` chunk that records it and stops; one that is
        past that chunk already (it follows, or its cursor is after it) just stops.
        """
        if after is not None and not is_entry_id(after):
            raise InvalidInput(f"{after!r} is not a stream entry id (<ms>-<seq>)")
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        cursor = after
        outage = _Outage(self._reconnect_seconds)
        # Following from a message's start: nothing before its first chunk.
        reached = after is not None
        on_idle: _OnIdle | None = None
        if self._ended_runs is not None:
            runs = self._ended_runs

            async def on_idle(at: str, idle_for: float) -> list[StreamEvent] | None:
                # A follower past the end stops; a reader of one answer that has not
                # seen it (written for no message, or its cursor was after it) gets it.
                end = await runs.end_behind(self._redis, keys, workflow_id, at, idle_for)
                if end is None or follow:
                    return None if end is None else []
                error = ErrorChunk(error_text=end.text)
                event_id = end.entry_id or at
                return [StreamEvent(event_id, error, message_id or "", -1, 1, RUN_END_SOURCE)]

        while True:
            try:
                if cursor is None:
                    if message_id is None:
                        message_id = await self.latest_sent(workflow_id)
                    if message_id is None:
                        message_id = await self.latest_message(workflow_id)
                    cursor = await self._cursor_for(keys, message_id)
                async for event in self._events(keys, cursor, outage, on_idle):
                    cursor = event.id
                    if event.type == SESSION_END_TYPE:
                        yield event
                        return
                    if not reached:
                        if message_id is not None and event.message_id != message_id:
                            continue
                        reached = True
                    if self._wanted(event, message_id, follow):
                        yield event
                        if not follow and event.type in TERMINAL_TYPES:
                            return
                # The stream vanished under the reader: its session has ended.
                return
            except (RedisError, RedisClusterException, OSError) as err:
                # Only an unreachable Redis is waited out; a refused command is raised.
                if not is_unreachable(err):
                    raise
                await outage.wait_or_raise(err, workflow_id)

    async def _events(
        self, keys: StreamKeys, cursor: str, outage: _Outage, on_idle: _OnIdle | None
    ) -> AsyncIterator[StreamEvent]:
        """The backlog after `cursor` without superseded attempts, then live entries."""
        backlog = without_superseded(await self._backlog(keys, cursor))
        outage.over()
        for event in backlog:
            yield event
        if backlog:
            cursor = backlog[-1].id
        async for event in self._tail(keys, cursor, outage, on_idle):
            yield event

    async def _vanished(self, keys: StreamKeys, cursor: str) -> bool:
        """Whether the stream a reader was reading from is gone: its session ended (and
        its last chunk was missed) or the stream expired."""
        return cursor != "0-0" and not await self._redis.exists(keys.chunks)

    async def last_entry_id(self, workflow_id: str) -> str | None:
        """The id of the newest entry of the session's stream (None while it has none)."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        last: Any = await self._redis.xrevrange(keys.chunks, count=1)
        return _decode(last[0][0]) if last else None

    async def newest_event(self, workflow_id: str) -> StreamEvent | None:
        """The newest chunk of the session's stream (None while it has none)."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        last: Any = await self._redis.xrevrange(keys.chunks, count=1)
        return _event(_decode(last[0][0]), last[0][1]) if last else None

    async def approval_point(
        self, workflow_id: str, message_id: str, approval_ids: set[str]
    ) -> str | None:
        """Where answer `message_id` stopped to ask for approvals `approval_ids`: the id
        of the `needs-approval` status that follows its last request for one of them (or
        of that request itself); the answer goes on after it once they are answered.
        None when the answer asked for none of them."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        point: str | None = None
        asked = False
        for event in await self._backlog(keys, await self._cursor_for(keys, message_id)):
            if event.message_id != message_id:
                continue
            chunk = event.chunk
            if chunk.type == "tool-approval-request":
                if getattr(chunk, "approval_id", None) in approval_ids:
                    point = event.id
                    asked = True
                else:
                    asked = False
            elif point is not None and asked and is_approval_status(chunk):
                point, asked = event.id, False
            else:
                asked = False
        return point

    async def check_cursor(self, workflow_id: str, after: str) -> None:
        """Refuse a cursor `read` could only wait on: malformed (`InvalidInput`), or
        past the newest entry (`CursorOutOfRange`): no reader was ever given that id,
        so it is forged, or from a stream Redis has since lost or expired."""
        if not is_entry_id(after):
            raise InvalidInput(f"{after!r} is not a stream entry id (<ms>-<seq>)")
        last = await self.last_entry_id(workflow_id)
        if entry_key(after) > (entry_key(last) if last else (0, 0)):
            raise CursorOutOfRange(
                f"event id {after!r} is past the end of the stream (its newest is "
                f"{last or 'none'}); read it again without a cursor"
            )

    async def latest_message(self, workflow_id: str) -> str | None:
        """The id of the session's newest assistant message that has started, if any."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        latest = await self._redis.hget(keys.index, LATEST_STARTED)
        return None if latest is None else _decode(latest)

    async def latest_sent(self, workflow_id: str) -> str | None:
        """The id of the newest assistant message a client sent (`record_sent`), which
        may not have started yet; None when no client recorded one."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        sent = await self._redis.hget(keys.index, LATEST_SENT)
        return None if sent is None else _decode(sent)

    async def record_sent(self, workflow_id: str, message_id: str) -> str | None:
        """Record `message_id` as the answer readers without a cursor follow; call it
        before the send is signalled. Returns the id it replaced, for `unrecord_sent`."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        # A script rather than MULTI: atomic on any Redis, and one command to a cluster.
        previous: bytes | str | None = await self._redis.eval(
            _RECORD_SCRIPT, 1, keys.index, message_id, LATEST_SENT, CLIENT_WRITE_TTL_SECONDS
        )
        return None if previous is None else _decode(previous)

    async def unrecord_sent(self, workflow_id: str, message_id: str, previous: str | None) -> None:
        """Undo `record_sent` of a send that failed, unless a later send recorded its own."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        await self._redis.eval(
            _UNRECORD_SCRIPT, 1, keys.index, message_id, previous or "", LATEST_SENT
        )

    async def erase(self, workflow_id: str) -> int:
        """Delete every key of the session (`streams.erasure`); how many there were."""
        return await erase_keys(self._redis, workflow_id, prefix=self._prefix)  # type: ignore[arg-type]

    async def is_active(self, workflow_id: str) -> bool:
        """Whether the newest message is still being written (no terminal chunk yet)."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self._prefix)
        last: Any = await self._redis.xrevrange(keys.chunks, count=1)
        if not last:
            return False
        event = _event(_decode(last[0][0]), last[0][1])
        return event.type not in TERMINAL_TYPES

    @staticmethod
    def _wanted(event: StreamEvent, message_id: str | None, follow: bool) -> bool:
        return follow or message_id is None or event.message_id == message_id

    async def _cursor_for(self, keys: StreamKeys, message_id: str | None) -> str:
        # Read the stream's tail before the index: a `start` indexed after that read
        # is necessarily written after the tail, so reading from it cannot miss it.
        tail: Any = await self._redis.xrevrange(keys.chunks, count=1)
        if message_id is not None:
            start: bytes | str | None = await self._redis.hget(keys.index, message_id)
            if start is not None:
                return id_before(_decode(start))
        return _decode(tail[0][0]) if tail else "0-0"

    async def _backlog(self, keys: StreamKeys, cursor: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        while True:
            page: Any = await self._redis.xrange(keys.chunks, min=f"({cursor}", count=_PAGE)
            events.extend(_event(_decode(i), fields) for i, fields in page)
            if len(page) < _PAGE:
                return events
            cursor = events[-1].id

    async def _tail(
        self, keys: StreamKeys, cursor: str, outage: _Outage, on_idle: _OnIdle | None
    ) -> AsyncIterator[StreamEvent]:
        waiting_since = time.monotonic()
        while True:
            response: Any = await self._redis.xread(
                {keys.chunks: cursor}, count=500, block=self._block_ms
            )
            outage.over()
            if not response:
                if await self._vanished(keys, cursor):
                    return
                if on_idle is not None:
                    last = await on_idle(cursor, time.monotonic() - waiting_since)
                    if last is not None:
                        for event in last:
                            yield event
                        return
                continue
            waiting_since = time.monotonic()
            for _stream, entries in response:
                for raw_id, fields in entries:
                    cursor = _decode(raw_id)
                    yield _event(cursor, fields)


class _Outage:
    """Reconnect backoff for one reader, and when to give up."""

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._since: float | None = None
        self._backoff = Backoff()

    def over(self) -> None:
        self._since = None
        self._backoff.reset()

    async def wait_or_raise(self, err: Exception, workflow_id: str) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._since >= self._limit:
            raise StreamUnavailable(
                f"Redis has been unreachable for {self._limit:.0f} s while reading the "
                f"stream of {workflow_id} ({err}); the session's history() has every "
                "finished step"
            ) from err
        await self._backoff.wait()


def _event(entry_id: str, fields: dict[bytes | str, bytes | str]) -> StreamEvent:
    values = {_decode(k): _decode(v) for k, v in fields.items()}
    return StreamEvent(
        id=entry_id,
        chunk=parse_chunk(json.loads(values["chunk"])),
        message_id=values["msg"],
        step=int(values["step"]),
        attempt=int(values["attempt"]),
        source=values.get("src", "model"),
    )
