"""Publishing chunks to a session's Redis stream, from activities.

A `ChunkWriter` never makes its caller wait for Redis: `emit` queues the chunk and a
background task writes whatever has queued in one round trip (a Lua script that
XADDs the batch, trims the stream, indexes a message's `start` and refreshes the
TTL). While one write is in flight the next batch accumulates, so a fast model
costs a few round trips per second, not one per token.

When Redis is unreachable a writer keeps its chunks, in order, and retries with
backoff, so a Redis restart mid-step costs readers a pause, not a gap. Only a longer
outage loses chunks: a writer that closes once Redis has been down for
`outage_grace` seconds drops what it still holds (logged, counted) rather than hold
up the step, whose result is recorded in workflow history regardless; readers fall
back to `history()`. A batch whose reply was lost after Redis applied it is written
again, so a restart can, rarely, repeat a few chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sessionflow.chunks import Chunk, DataChunk
from sessionflow.streams.backoff import Backoff
from sessionflow.streams.keys import StreamKeys

log = structlog.get_logger(__name__)

# KEYS: chunks stream, index hash.
# ARGV: max length, ttl seconds, message id, step, attempt, source, 1-based position
# of the batch's `start` chunk (0 if none), then the chunk JSON documents.
_PUBLISH_SCRIPT = """
local ids = {}
local start_at = tonumber(ARGV[7])
for i = 8, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
    'chunk', ARGV[i], 'msg', ARGV[3], 'step', ARGV[4], 'attempt', ARGV[5], 'src', ARGV[6])
  ids[#ids + 1] = id
  if i - 7 == start_at then
    redis.call('HSET', KEYS[2], 'latest', ARGV[3], ARGV[3], id)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return ids
"""


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

    async def publish(self, where: StepStream, chunks: Sequence[Chunk]) -> list[str]:
        """Write chunks now, in order, and return their entry ids; raises on Redis errors."""
        if not chunks:
            return []
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
        ]
        args.extend(c.to_json() for c in chunks)
        started = time.monotonic()
        try:
            ids = await self._script(keys=[keys.chunks, keys.index], args=args)
        except (RedisError, OSError):
            if self._down_since is None:
                self._down_since = started
            raise
        self._down_since = None
        if self.on_write is not None:
            self.on_write(time.monotonic() - started, len(chunks))
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

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
            await self._publisher.publish(self._where, batch)
        except (RedisError, OSError) as err:
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
        self.written += len(batch)
        self._failing = False
        return True

    def _drop(self, reason: str) -> None:
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
