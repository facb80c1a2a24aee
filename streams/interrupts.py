"""Interrupt notices through Redis, so running steps need not heartbeat every 0.4 s.

An interrupt reaches a running step as Temporal's cancellation of its activity, and
Temporal hands that only to a heartbeat (in the answer to it). Steps therefore
heartbeated every 0.4 s: at 50 streaming sessions, 125 heartbeats a second, each a
write of the Temporal server's, most of the server's CPU while tokens stream, on the
cores that carry the streams.

Now the session workflow, whenever it cancels a running step (an interrupt from
anywhere: the client's `interrupt` and `send(..., interrupt_if_streaming=...)`, the
gateway, the page, the CLI, or a signal from the Temporal UI), also bumps a counter in
the session's index hash (`activities.interrupt_notice`, a local activity): one path,
through the workflow, for every way in. Each worker process reads the counters of the
sessions it runs steps for in one pipelined round trip every `POLL_SECONDS`; a step
whose session's counter moved heartbeats at once and then every 0.1 s for
`FAST_WINDOW_SECONDS`, so the workflow's cancel, recorded a moment after the signal,
comes back on one of those answers. Every other step heartbeats every 2 s (sooner when
its heartbeat timeout asks), which is still how Temporal notices a dead worker.

Nothing depends on the notice arriving: a step whose counter cannot be read (Redis
down) heartbeats every 0.4 s as before, and a cancel whose notice was not written
still arrives, on the next slow heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from sessionflow.streams.keys import CLIENT_WRITE_TTL_SECONDS, INTERRUPTS, StreamKeys

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.1
# How long a step heartbeats fast after its session's counter moved: the workflow's
# cancel is recorded within this of the signal even on a loaded server.
FAST_WINDOW_SECONDS = 5.0
# How long a starting step waits for its counter's value, a poll for all of them, and
# an interrupt for its notice to be written: past these, Redis counts as unreachable.
BASELINE_PATIENCE_SECONDS = 0.25
READ_PATIENCE_SECONDS = 0.5
ANNOUNCE_PATIENCE_SECONDS = 0.5
# What a read of the counters can fail with while Redis (or a cluster's slot) is away;
# ValueError: a value that is not a counter.
_UNREADABLE = (RedisError, RedisClusterException, OSError, ValueError)

# Bump the counter and keep the index hash as long as a sent message's record does.
# KEYS: index hash. ARGV: the field, the TTL in seconds.
_ANNOUNCE_SCRIPT = """
local count = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return count
"""


async def announce_interrupt(
    redis: Redis | RedisCluster, workflow_id: str, *, prefix: str = "sf"
) -> None:
    """Tell the workers running the session's steps that one was cancelled.

    The workflow calls it (a local activity) after it requested the cancel; a failure
    is logged and swallowed, since the cancel reaches the step a little later anyway
    (at its next slow heartbeat)."""
    keys = StreamKeys.for_workflow(workflow_id, prefix=prefix)
    try:
        # Not the client's retries through an outage: the interrupt is on its way.
        async with asyncio.timeout(ANNOUNCE_PATIENCE_SECONDS):
            await redis.eval(_ANNOUNCE_SCRIPT, 1, keys.index, INTERRUPTS, CLIENT_WRITE_TTL_SECONDS)
    except Exception as err:  # best effort: the signal was delivered
        log.warning(
            "interrupt notice not written; it lands on a heartbeat",
            workflow_id=workflow_id,
            error=str(err),
        )


@dataclass(eq=False)
class Watched:
    """One running step's view of its session's counter."""

    key: str
    # The counter when the step started; None when it could not be read.
    baseline: int | None
    # Set when the counter moved past the baseline (the step clears it once seen).
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    # False while the counter cannot be read: heartbeat fast, as if always interrupted.
    readable: bool = True


class InterruptWatch:
    """Watches the interrupt counters of one process's running steps, all in one read
    per `POLL_SECONDS` (one pipelined round trip; per node on a cluster)."""

    def __init__(
        self, redis: Redis | RedisCluster, *, prefix: str = "sf", poll_seconds: float = POLL_SECONDS
    ):
        self._redis = redis
        self._prefix = prefix
        self._poll_seconds = poll_seconds
        self._watched: set[Watched] = set()
        self._poller: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watching(self, workflow_id: str) -> AsyncIterator[Watched]:
        """Watch the session's counter while the block runs."""
        key = StreamKeys.for_workflow(workflow_id, prefix=self._prefix).index
        try:
            # Not the client's retries through an outage: a step starts without Redis
            # (heartbeating fast) and the poller reads the baseline once it can.
            async with asyncio.timeout(BASELINE_PATIENCE_SECONDS):
                watched = Watched(key, _count(await self._redis.hget(key, INTERRUPTS)))
        except (*_UNREADABLE, TimeoutError):
            watched = Watched(key, None, readable=False)
        self._watched.add(watched)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            yield watched
        finally:
            self._watched.discard(watched)

    async def _poll(self) -> None:
        while self._watched:
            await asyncio.sleep(self._poll_seconds)
            watched = list(self._watched)
            if not watched:
                return
            keys = sorted({w.key for w in watched})
            try:
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.hget(key, INTERRUPTS)
                async with asyncio.timeout(READ_PATIENCE_SECONDS):
                    replies = await pipe.execute()
                counts = dict(zip(keys, map(_count, replies), strict=True))
            except (*_UNREADABLE, TimeoutError):
                for w in watched:
                    w.readable = False
                continue
            for w in watched:
                w.readable = True
                count = counts[w.key]
                if w.baseline is None:
                    w.baseline = count
                elif count != w.baseline:  # != : the hash may have expired and restarted
                    w.baseline = count
                    w.moved.set()


def _count(value: Any) -> int:
    """The counter's value; a session never interrupted has none yet."""
    return 0 if value is None else int(value)
