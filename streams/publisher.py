"""Publishing chunks to a session's Redis stream, from activities.

A `ChunkWriter` never makes its caller wait for Redis: `emit` queues the chunk and a
background task writes whatever has queued in one round trip (a Lua script that
XADDs the batch, trims the stream, indexes a message's `start` and refreshes the
TTL). While one write is in flight the next batch accumulates, so a fast model
costs a few round trips per second, not one per token.

When Redis is unreachable a writer keeps its chunks, in order, and retries with
backoff, so a Redis restart or a Redis Cluster failover mid-step costs readers a
pause, not a gap. Only a longer outage loses chunks: a writer that closes once Redis
has been down for `outage_grace` seconds drops what it still holds (logged, counted)
rather than hold up the step, whose result is recorded in workflow history
regardless; readers fall back to `history()`.

Writes are idempotent. Each writer has a random token and numbers its chunks; the
script records, beside the stream, how many of the writer's chunks it holds, and a
retried batch (its first try's reply lost to a dropped connection, whether retried by
the writer or by redis-py's cluster client) adds only the chunks that are not there
yet. So a retry never repeats a chunk. Once a writer is done its record is deleted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from sessionflow.chunks import Chunk, DataChunk
from sessionflow.streams.backoff import Backoff
from sessionflow.streams.keys import StreamKeys

log = structlog.get_logger(__name__)

# KEYS: chunks stream, index hash, write marks hash (one hash tag: one slot).
# ARGV: max length, ttl seconds, message id, step, attempt, source, 1-based position
# of the batch's `start` chunk (0 if none), writer token, the writer's number of the
# batch's first chunk, then the chunk JSON documents. Chunks the writer's mark says
# are already in the stream are skipped; returns the ids of the entries added.
_PUBLISH_SCRIPT = """
local ids = {}
local start_at = tonumber(ARGV[7])
local first = tonumber(ARGV[9])
local done = tonumber(redis.call('HGET', KEYS[3], ARGV[8]) or '0')
for i = 10, #ARGV do
  if first + i - 10 > done then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
      'chunk', ARGV[i], 'msg', ARGV[3], 'step', ARGV[4], 'attempt', ARGV[5], 'src', ARGV[6])
    ids[#ids + 1] = id
    if i - 9 == start_at then
      redis.call('HSET', KEYS[2], 'latest', ARGV[3], ARGV[3], id)
    end
  end
end
if #ids > 0 then
  redis.call('HSET', KEYS[3], ARGV[8], first + #ARGV - 10)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return ids
"""

# Errors after which a write may be tried again (with the same token and numbers).
WRITE_ERRORS = (RedisError, RedisClusterException, OSError)


@dataclass(frozen=True)
class Retention:
    """How much of a stream Redis keeps: entries (approximate) and idle lifetime."""

    max_len: int = 10_000
    ttl_seconds: int = 7 * 24 * 3600


@dataclass(frozen=True)
class StepStream:
    """Where a batch of chunks belongs: the session, its message and step, and which
    activity attempt wrote it.

    `source` names the writer within the step ("model", "tool:<call id>", "sandbox",
    "workflow"): a retry supersedes only earlier attempts of the same source.
    """

    workflow_id: str
    message_id: str
    step: int
    attempt: int = 1
    source: str = "model"


@dataclass
class StreamPublisher:
    """Writes UI message chunks to per-session Redis streams."""

    # Or a `RedisCluster` (see `sessionflow.connections.redis_client`): the script and
    # HDEL go to the primary of the session's slot. Typed `Redis` for the activities
    # that take this client from here.
    redis: Redis
    retention: Retention = field(default_factory=Retention)
    prefix: str = "sf"
    # Told the duration (s) and size of every batched write, e.g. for metrics.
    on_write: Callable[[float, int], None] | None = None
    # How long a closing writer waits for Redis to come back before dropping chunks.
    outage_grace: float = 2.0
    # Chunks one writer holds while Redis is down; past this it drops them.
    max_buffered: int = 10_000

    def __post_init__(self) -> None:
        self._script = self.redis.register_script(_PUBLISH_SCRIPT)
        self._down_since: float | None = None

    @property
    def outage_seconds(self) -> float:
        """How long writes have been failing without a success in between (0 if not)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    async def publish(
        self,
        where: StepStream,
        chunks: Sequence[Chunk],
        *,
        writer: str | None = None,
        first: int = 1,
    ) -> list[str]:
        """Write chunks now, in order, and return the ids of the entries added; raises on
        Redis errors.

        `writer` is a token under which chunks are numbered (`first` is the number of
        the first of `chunks`): chunks of that writer already in the stream, up to the
        highest number written, are skipped, so the same batch can be sent again after
        an error without repeating a chunk. Without a token the call is its own writer,
        forgotten once written.
        """
        if not chunks:
            return []
        token = writer or secrets.token_hex(8)
        keys = StreamKeys.for_workflow(where.workflow_id, prefix=self.prefix)
        start_at = next((i + 1 for i, c in enumerate(chunks) if c.type == "start"), 0)
        args: list[str | int] = [
            self.retention.max_len,
            self.retention.ttl_seconds,
            where.message_id,
            where.step,
            where.attempt,
            where.source,
            start_at,
            token,
            first,
        ]
        args.extend(c.to_json() for c in chunks)
        started = time.monotonic()
        try:
            ids = await self._script(keys=[keys.chunks, keys.index, keys.writes], args=args)
        except WRITE_ERRORS:
            if self._down_since is None:
                self._down_since = started
            raise
        self._down_since = None
        if self.on_write is not None:
            self.on_write(time.monotonic() - started, len(ids))
        if writer is None:
            await self.forget(where.workflow_id, token)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def forget(self, workflow_id: str, writer: str) -> None:
        """Delete a finished writer's mark (best effort: it expires with the stream)."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self.prefix)
        try:
            await self.redis.hdel(keys.writes, writer)
        except WRITE_ERRORS as err:
            log.debug("could not delete a writer's mark", workflow_id=workflow_id, error=str(err))

    async def has_started(self, workflow_id: str, message_id: str) -> bool:
        """Whether the message's `start` chunk is in the stream."""
        keys = StreamKeys.for_workflow(workflow_id, prefix=self.prefix)
        return bool(await self.redis.hexists(keys.index, message_id))

    def writer(self, where: StepStream) -> ChunkWriter:
        """A batching writer; a retry's writer first announces it (`data-retry`) so
        readers can drop the failed attempt's output from the same source."""
        writer = ChunkWriter(self, where)
        if where.attempt > 1:
            writer.emit(
                DataChunk(
                    type="data-retry",
                    data={"step": where.step, "attempt": where.attempt, "source": where.source},
                    transient=True,
                )
            )
        return writer


class ChunkWriter:
    """Batches one step's chunks into as few Redis round trips as latency allows."""

    def __init__(self, publisher: StreamPublisher, where: StepStream) -> None:
        self._publisher = publisher
        self._where = where
        self._pending: list[Chunk] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        # Chunks are numbered 1, 2, ... under this writer's token; `_sent` of them are in
        # the stream (or were dropped), and the first pending one is number `_sent + 1`.
        self._token = secrets.token_hex(8)
        self._sent = 0
        self.written = 0
        self.dropped = 0

    async def __aenter__(self) -> ChunkWriter:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def emit(self, chunk: Chunk) -> None:
        """Queue a chunk; it is written as soon as the previous write returns."""
        if self._closed:
            raise RuntimeError("chunk writer is closed")
        self._pending.append(chunk)
        self._wake.set()

    async def close(self) -> None:
        """Write everything still queued, then stop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            # Shielded so a cancelled activity still gets its final chunks (abort) out.
            await asyncio.shield(self._task)
        if self.written and not self._failing:
            # Nothing of ours can be retried any more. (After an outage the mark is
            # left to expire with the stream rather than wait on Redis again.)
            await asyncio.shield(self._publisher.forget(self._where.workflow_id, self._token))

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending and not await self._write():
                if self._closed and self._publisher.outage_seconds >= self._publisher.outage_grace:
                    self._drop("Redis still unreachable at the end of the step")
                    return
                if len(self._pending) > self._publisher.max_buffered:
                    self._drop("too many chunks held while Redis is unreachable")
                await backoff.wait()
                self._wake.set()
                continue
            backoff.reset()
            if self._closed and not self._pending:
                return

    async def _write(self) -> bool:
        """Write everything queued; on a Redis error keep it, in order, for the next try."""
        batch, self._pending = self._pending, []
        try:
            await self._publisher.publish(
                self._where, batch, writer=self._token, first=self._sent + 1
            )
        except WRITE_ERRORS as err:
            self._pending = batch + self._pending
            if not self._failing:
                log.warning(
                    "stream publish failed; holding chunks and retrying",
                    workflow_id=self._where.workflow_id,
                    message_id=self._where.message_id,
                    step=self._where.step,
                    error=str(err),
                )
            self._failing = True
            return False
        self._sent += len(batch)
        self.written += len(batch)
        self._failing = False
        return True

    def _drop(self, reason: str) -> None:
        # Dropped chunks keep their numbers: a later chunk must not reuse one that a
        # lost reply may have written.
        self._sent += len(self._pending)
        self.dropped += len(self._pending)
        log.warning(
            "stream chunks dropped; history keeps the step",
            reason=reason,
            workflow_id=self._where.workflow_id,
            message_id=self._where.message_id,
            step=self._where.step,
            dropped=len(self._pending),
        )
        self._pending = []
