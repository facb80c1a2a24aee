"""Publishing chunks to a session's Redis stream, from activities.

Every write is one call of a Lua script that XADDs a batch, trims the stream, indexes
a message's `start` and refreshes the TTL. Activities write through a `ChunkWriter`
(`streams.writer`), which never makes its caller wait for Redis; the writers of one
event loop share a pipeline (`publish_many`), one script call per writer.

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
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from sessionflow.chunks import Chunk, DataChunk
from sessionflow.streams.keys import StreamKeys
from sessionflow.streams.writer import WRITE_ERRORS, ChunkWriter, Flusher, StepStream, Write

__all__ = ["WRITE_ERRORS", "ChunkWriter", "Retention", "StepStream", "StreamPublisher"]

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


@dataclass(frozen=True)
class Retention:
    """How much of a stream Redis keeps: entries (approximate) and idle lifetime."""

    max_len: int = 10_000
    ttl_seconds: int = 7 * 24 * 3600


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
        self._flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = (
            weakref.WeakKeyDictionary()
        )

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
        [ids] = await self.publish_many([Write(where, chunks, token, first)])
        if isinstance(ids, Exception):
            raise ids
        if writer is None:
            await self.forget(where.workflow_id, token)
        return ids

    async def publish_many(self, writes: Sequence[Write]) -> list[list[str] | Exception]:
        """Each write's entry ids, or the error that write met: several go in one
        pipeline (one round trip per Redis node), one alone as a plain script call.
        Raises when Redis could not be reached at all."""
        started = time.monotonic()
        try:
            if len(writes) == 1:
                keys, args = self._call(writes[0])
                replies: list[Any] = [await self._script(keys=keys, args=args)]
            else:
                replies = await self._pipelined(writes)
        except WRITE_ERRORS:
            self._down_since = self._down_since or started
            raise
        elapsed = time.monotonic() - started
        results: list[list[str] | Exception] = []
        for write, reply in zip(writes, replies, strict=True):
            if isinstance(reply, Exception):
                results.append(reply)
                continue
            ids = [i.decode() if isinstance(i, bytes) else str(i) for i in reply]
            results.append(ids)
            if self.on_write is not None:
                if write.context is None:
                    self.on_write(elapsed, len(ids))
                else:
                    write.context.run(self.on_write, elapsed, len(ids))
        if all(isinstance(r, Exception) for r in results):
            self._down_since = self._down_since or started
        else:
            self._down_since = None
        return results

    async def _pipelined(self, writes: Sequence[Write]) -> list[Any]:
        replies = await self._send_pipeline(writes)
        # A server that lost its script cache (restarted, or a replica just promoted):
        # load the script and send those writes again (they are idempotent).
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self.redis.script_load(_PUBLISH_SCRIPT)
            again = await self._send_pipeline([writes[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _send_pipeline(self, writes: Sequence[Write]) -> list[Any]:
        # Not `self._script(client=pipe)`: a plain pipeline would ask SCRIPT EXISTS
        # first, a second round trip on every flush.
        pipe = self.redis.pipeline(transaction=False)
        for write in writes:
            keys, args = self._call(write)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))

    def _call(self, write: Write) -> tuple[list[str], list[str | int]]:
        """The publish script's keys and arguments for one write."""
        where, chunks = write.where, write.chunks
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
            write.writer,
            write.first,
        ]
        args.extend(c.to_json() for c in chunks)
        return [keys.chunks, keys.index, keys.writes], args

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
        """A batching writer, sharing this event loop's pipeline with the others; a
        retry's writer first announces it (`data-retry`) so readers can drop the failed
        attempt's output from the same source."""
        loop = asyncio.get_running_loop()
        flusher = self._flushers.get(loop)
        if flusher is None:
            flusher = self._flushers[loop] = Flusher(self)
        writer = ChunkWriter(self, flusher, where)
        if where.attempt > 1:
            writer.emit(
                DataChunk(
                    type="data-retry",
                    data={"step": where.step, "attempt": where.attempt, "source": where.source},
                    transient=True,
                )
            )
        return writer
