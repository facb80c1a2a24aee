"""Ending the readers of a session whose run closed without ending its answer.

The end of an answer (`finish`, `abort` or `error`) is written by the session's own
code. When a run closes any other way (an operator presses Terminate in the Temporal
UI, the run fails outside our code or times out), Temporal runs none of that code, so
the answer never ends in the stream, and a reader waiting for its end would wait on
keep-alives for good. Only the reading side can notice, so it does:

- A reader whose blocking read comes back empty (its idle tick, `StreamReader`'s
  `block_ms`) asks `EndedRuns.check` whether the session's run still runs. The answer
  comes from a `RunProbe` the client gives (a Temporal `describe`: this layer does not
  talk to Temporal), is cached per session and shared by every reader of the session
  in the process, and one probe at a time per session is in flight: a gateway holding
  hundreds of readers of one session asks once. How stale an answer a reader accepts
  grows with how long it has waited (a quarter of it, between `MIN_AGE` and
  `MAX_AGE` seconds), so a reader of an answer that just stopped mid-sentence learns
  of a termination in seconds, and a session waiting days for an approval costs one
  `describe` a minute per process.
- A run that continued as new has not ended (its successor carries the session on,
  and `describe` without a run id shows that one); a completed run is a *closed*
  session, whose own end (`data-session-end`, then its keys erased) already ends its
  readers. Only a run that was terminated, failed, timed out or cancelled counts.
- Its end is written into the stream itself (`record_end`), once per run: an `error`
  chunk saying what happened, in the wire format readers already understand, so
  `useChat` and our client see an error rather than a clean `finish`. Written rather
  than made up by each reader, because every later reader needs it too: one that
  reconnects by cursor, one that connects after the termination (it reads the end in
  its backlog and stops at once), `is_streaming` and the gateway's resume endpoint
  (the answer has ended). A Lua script makes it idempotent across readers and
  processes (the index's `run-end` field names the run and the entry), and it writes
  nothing into a stream that is gone, so a session erased meanwhile stays erased.
  The chunk belongs to the answer that was open (the newest entry's message when that
  is not an end), else to no message (`""`, like `data-session-end`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from sessionflow.chunks import ErrorChunk
from sessionflow.streams.keys import CLIENT_WRITE_TTL_SECONDS, RUN_END, StreamKeys

log = structlog.get_logger(__name__)

# The `src` of the entry `record_end` writes: no step or attempt of a turn wrote it.
RUN_END_SOURCE = "run-end"
# A reader accepts an answer this stale: a quarter of how long it has waited, bounded.
MIN_AGE = 2.0
MAX_AGE = 60.0
_SHARE_OF_WAIT = 0.25
# Past this many sessions in the cache, answers older than MAX_AGE are dropped.
_PRUNE_AT = 1024

# KEYS: chunks stream, index hash (one hash tag: one slot). ARGV: the run id, the error
# chunk's JSON, the index's lifetime (s) if it has none, the entry's source.
# Returns the run's end entry, as XRANGE gives it: already written, or written now; or
# the session's own end (`data-session-end`), if that came first; nil when the stream
# is empty or gone.
_RECORD_END_SCRIPT = """
local mark = redis.call('HGET', KEYS[2], ARGV[5])
if mark then
  local run, id = string.match(mark, '^(%S+) (%S+)$')
  if run == ARGV[1] then
    local found = redis.call('XRANGE', KEYS[1], id, id)
    if #found > 0 then return found[1] end
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return false end
local fields = {}
for i = 1, #last[1][2], 2 do fields[last[1][2][i]] = last[1][2][i + 1] end
local ok, chunk = pcall(cjson.decode, fields['chunk'] or '')
local kind = (ok and type(chunk) == 'table') and chunk['type'] or ''
if kind == 'data-session-end' then return last[1] end
local msg = ''
if kind ~= 'finish' and kind ~= 'abort' and kind ~= 'error' then msg = fields['msg'] or '' end
local id = redis.call('XADD', KEYS[1], '*',
  'chunk', ARGV[2], 'msg', msg, 'step', '-1', 'attempt', '1', 'src', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[5], ARGV[1] .. ' ' .. id)
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return redis.call('XRANGE', KEYS[1], id, id)[1]
"""


@dataclass(frozen=True)
class RunEnd:
    """A session's newest run closed without ending its answer: which run, and the
    text readers are shown (`the session's run was terminated: ...`)."""

    run_id: str
    text: str


@dataclass(frozen=True)
class RecordedEnd:
    """A run's end as a reader meets it: its text, and its entry in the stream (None
    when there is no stream to hold it)."""

    text: str
    entry_id: str | None


# Given a workflow id: its newest run's `RunEnd` if that closed (terminated, failed,
# timed out, cancelled), else None (it runs, continued as new, completed, never ran).
RunProbe = Callable[[str], Awaitable[RunEnd | None]]


@dataclass
class _Known:
    end: RunEnd | None
    at: float


class EndedRuns:
    """Whether sessions' runs have closed, as their readers ask it: answers cached per
    session and shared, one probe in flight per session (see the module docstring)."""

    def __init__(self, probe: RunProbe, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._asking: dict[str, asyncio.Task[RunEnd | None]] = {}

    async def check(self, workflow_id: str, *, idle_for: float) -> RunEnd | None:
        """The session's `RunEnd` when its run has closed, else None; asks the probe
        only when the answer known is older than a reader idle for `idle_for` seconds
        accepts. A probe that fails counts as "runs" (asked again later)."""
        accepts = min(MAX_AGE, max(MIN_AGE, idle_for * _SHARE_OF_WAIT))
        known = self._known.get(workflow_id)
        if known is not None and self._clock() - known.at < accepts:
            return known.end
        task = self._asking.get(workflow_id)
        if task is None:
            task = asyncio.create_task(self._ask(workflow_id))
            self._asking[workflow_id] = task
        # Shielded: a reader that goes away does not cancel the others' answer.
        return await asyncio.shield(task)

    async def end_behind(
        self,
        redis: Redis | RedisCluster,
        keys: StreamKeys,
        workflow_id: str,
        cursor: str,
        idle_for: float,
    ) -> RecordedEnd | None:
        """For a reader idle at `cursor` for `idle_for` seconds: the run's end when the
        run has closed (recorded in the stream now, if no reader did it before) and the
        reader is past that entry, so nothing more will come. None while the run runs,
        or while its end is still ahead of the cursor (the reader's next read brings it)."""
        end = await self.check(workflow_id, idle_for=idle_for)
        if end is None:
            return None
        entry_id = await record_end(redis, keys, end)
        if entry_id is not None and _entry_order(cursor) < _entry_order(entry_id):
            return None
        return RecordedEnd(end.text, entry_id)

    async def _ask(self, workflow_id: str) -> RunEnd | None:
        try:
            end = await self._probe(workflow_id)
        except Exception as err:  # Temporal unreachable, say: the reader waits on
            log.debug("could not tell whether a run ended", workflow_id=workflow_id, error=str(err))
            end = None
        finally:
            self._asking.pop(workflow_id, None)
        if len(self._known) >= _PRUNE_AT:
            old = self._clock() - MAX_AGE
            self._known = {k: v for k, v in self._known.items() if v.at >= old}
        self._known[workflow_id] = _Known(end, self._clock())
        return end


async def record_end(redis: Redis | RedisCluster, keys: StreamKeys, end: RunEnd) -> str | None:
    """Write the run's end into the stream unless it is there; the id of its entry (or
    of the session's own end, `data-session-end`, if the session ended first, which
    readers stop at instead), or None when the stream is empty or gone."""
    entry: Any = await redis.eval(
        _RECORD_END_SCRIPT,
        2,
        keys.chunks,
        keys.index,
        end.run_id,
        ErrorChunk(error_text=end.text).to_json(),
        CLIENT_WRITE_TTL_SECONDS,
        RUN_END_SOURCE,
        RUN_END,
    )
    if not entry:
        return None
    raw_id = entry[0]
    return raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
