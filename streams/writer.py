"""Writing one step's chunks to its stream, batched with every other writer in the process.

A `ChunkWriter` never makes its caller wait for Redis: `emit` queues the chunk and
the event loop's `Flusher` writes it. The flusher sends what every writer has queued
in one pipeline, one script call per writer, so fifty sessions streaming at once cost
one round trip per pass of the event loop, not fifty: on a busy host every send is a
system call that can hand Redis the CPU mid-burst and stall every other stream of the
process behind it (BENCHMARKS.md, "Stream latency"). While a pipeline is in flight
the next batch accumulates, so a fast model costs a few round trips per second too.

Each writer keeps its own order (one batch of its in flight at a time) and numbers its
chunks, so the publish script's idempotence holds inside a pipeline as it does alone.
A writer whose write fails leaves the pipeline and retries alone, with backoff, until
a write of its own succeeds: on a Redis Cluster with one primary down, writers whose
sessions live on the other primaries keep streaming.

When Redis is unreachable a writer keeps its chunks, in order, and retries, so a
Redis restart or a Cluster failover mid-step costs readers a pause, not a gap. Only
a longer outage loses chunks: a writer that closes once Redis has been down for the
publisher's `outage_grace` drops what it still holds (logged, counted) rather than
hold up the step, whose result is recorded in workflow history regardless.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import structlog
from redis.exceptions import RedisClusterException, RedisError

from sessionflow.chunks import Chunk
from sessionflow.streams.backoff import Backoff

log = structlog.get_logger(__name__)

# Errors after which a write may be tried again (with the same token and numbers).
WRITE_ERRORS = (RedisError, RedisClusterException, OSError)


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


@dataclass(frozen=True)
class Write:
    """One writer's batch: chunks numbered from `first` under the token `writer`."""

    where: StepStream
    chunks: Sequence[Chunk]
    writer: str
    first: int = 1
    # The writing activity's context, where the write's metrics are recorded: the
    # flusher's own task belongs to no activity.
    context: contextvars.Context | None = field(default=None, compare=False)


class Sink(Protocol):
    """What writers need of the publisher (`StreamPublisher`)."""

    outage_grace: float
    max_buffered: int

    @property
    def outage_seconds(self) -> float: ...

    async def publish_many(self, writes: Sequence[Write]) -> list[list[str] | Exception]: ...

    async def forget(self, workflow_id: str, writer: str) -> None: ...


class Flusher:
    """Writes the queued chunks of every writer on one event loop, one pipeline a round."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._ready: dict[ChunkWriter, None] = {}  # an ordered set
        self._task: asyncio.Task[None] | None = None

    def want(self, writer: ChunkWriter) -> None:
        """Write `writer`'s queued chunks in the next round."""
        self._ready[writer] = None
        if self._task is None or self._task.done():
            # A context of its own: the task outlives the activity that started it.
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0)  # writers woken in this pass of the loop join the round
            if not self._ready:
                return  # the next `want` starts a new task
            writers, self._ready = list(self._ready), {}
            writes = [w.take() for w in writers]
            try:
                replies = await self._sink.publish_many(writes)
            except Exception as err:  # each writer retries alone, and tells what it is
                replies = [err] * len(writes)
            for writer, write, reply in zip(writers, writes, replies, strict=True):
                if isinstance(reply, Exception):
                    writer.failed(write, reply)
                else:
                    writer.wrote(write)


class ChunkWriter:
    """Batches one step's chunks into as few Redis round trips as latency allows."""

    def __init__(self, sink: Sink, flusher: Flusher, where: StepStream) -> None:
        self._sink = sink
        self._flusher = flusher
        self._where = where
        self._pending: list[Chunk] = []
        self._busy = False  # a batch of ours is being written, or retried
        self._closed = False
        self._failing = False
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._context = contextvars.copy_context()
        self._retrying: asyncio.Task[None] | None = None
        # Chunks are numbered 1, 2, ... under this writer's token; `_sent` of them are in
        # the stream (or were dropped), and the first pending one is number `_sent + 1`.
        self._token = secrets.token_hex(8)
        self._sent = 0
        self.written = 0
        self.dropped = 0

    async def __aenter__(self) -> ChunkWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def emit(self, chunk: Chunk) -> None:
        """Queue a chunk; it is written as soon as the writer's previous write returns."""
        if self._closed:
            raise RuntimeError("chunk writer is closed")
        self._pending.append(chunk)
        if not self._busy:
            self._flusher.want(self)

    async def close(self) -> None:
        """Write everything still queued, then stop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._settle()
        # Shielded so a cancelled activity still gets its final chunks (abort) out.
        await asyncio.shield(self._done)
        if self.written and not self._failing:
            # Nothing of ours can be retried any more. (After an outage the mark is
            # left to expire with the stream rather than wait on Redis again.)
            await asyncio.shield(self._sink.forget(self._where.workflow_id, self._token))

    def take(self) -> Write:
        """Hand the queued chunks to the flusher; the writer is busy until it answers."""
        batch, self._pending = self._pending, []
        self._busy = True
        return Write(self._where, batch, self._token, self._sent + 1, self._context)

    def wrote(self, write: Write) -> None:
        self._landed(len(write.chunks))
        self._busy = False
        self._next()

    def _landed(self, count: int) -> None:
        """`count` chunks, the next after `_sent`, are in the stream."""
        self._sent += count
        self.written += count
        self._failing = False

    def failed(self, write: Write, err: Exception) -> None:
        """Keep the batch, in order, and retry it alone."""
        self._pending = [*write.chunks, *self._pending]
        self._note_failure(err)
        self._retrying = asyncio.create_task(self._retry(), context=self._context.copy())

    def _next(self) -> None:
        if self._pending:
            self._flusher.want(self)
        else:
            self._settle()

    def _settle(self) -> None:
        if self._closed and not self._busy and not self._pending and not self._done.done():
            self._done.set_result(None)

    async def _retry(self) -> None:
        backoff = Backoff()
        try:
            while not await self._write_alone():
                if self._closed and self._sink.outage_seconds >= self._sink.outage_grace:
                    self._drop("Redis still unreachable at the end of the step")
                    break
                if len(self._pending) > self._sink.max_buffered:
                    self._drop("too many chunks held while Redis is unreachable")
                await backoff.wait()
        except BaseException as err:  # not an outage: `close` raises it
            if not self._done.done():
                self._done.set_exception(err)
            raise
        self._busy = False
        self._next()

    async def _write_alone(self) -> bool:
        """Write everything queued; on a Redis error keep it, in order, for the next try."""
        batch, self._pending = self._pending, []
        if not batch:
            return True
        write = Write(self._where, batch, self._token, self._sent + 1)
        try:
            [reply] = await self._sink.publish_many([write])
        except WRITE_ERRORS as err:
            reply = err
        if isinstance(reply, Exception):
            self._pending = batch + self._pending
            if not isinstance(reply, WRITE_ERRORS):
                raise reply
            self._note_failure(reply)
            return False
        self._landed(len(batch))
        return True

    def _note_failure(self, err: Exception) -> None:
        if not self._failing and isinstance(err, WRITE_ERRORS):
            log.warning(
                "stream publish failed; holding chunks and retrying",
                workflow_id=self._where.workflow_id,
                message_id=self._where.message_id,
                step=self._where.step,
                error=str(err),
            )
        self._failing = True

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
