"""Erasing a session's keys from Redis, when the session ends.

Every key of a session starts with `sf:{<workflow id>}` (`streams.keys`): the stream,
its index and write marks, turns' context, tool calls' recorded command results and
progress budgets. They are found with SCAN over that prefix (on a Redis Cluster,
redis-py scans every primary; the hash tag puts every match on one of them) rather
than listed by name, since several are named after ids only the turns knew.

Before the keys go, the stream gets one last chunk (`data-session-end`), written as
its own command: a reader blocked on the stream is woken by it before the deletion
that follows, and stops there (`StreamReader.read`), so a session started later under
the same id is never read as the continuation of this one. A reader that was not
waiting at that instant finds the stream gone on its next read and stops too.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from sessionflow.chunks import session_end_chunk
from sessionflow.streams.keys import session_prefix
from sessionflow.streams.publisher import StepStream, StreamPublisher

# Keys deleted per command.
_BATCH = 500
_GLOB_SPECIAL = "\\*?[]"


def key_pattern(workflow_id: str, *, prefix: str = "sf") -> str:
    """A SCAN MATCH pattern for every key of the session, and of no other session."""
    base = session_prefix(workflow_id, prefix=prefix)
    base = "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in base)
    return f"{base}:*"


async def session_keys(redis: Redis, workflow_id: str, *, prefix: str = "sf") -> list[str]:
    """Every key Redis holds of the session."""
    found: set[str] = set()
    iterator: Any = redis.scan_iter(match=key_pattern(workflow_id, prefix=prefix), count=1000)
    async for key in iterator:
        found.add(key.decode() if isinstance(key, bytes) else str(key))
    return sorted(found)


async def erase_keys(redis: Redis, workflow_id: str, *, prefix: str = "sf") -> int:
    """Delete every key of the session; how many there were."""
    keys = await session_keys(redis, workflow_id, prefix=prefix)
    for start in range(0, len(keys), _BATCH):
        await redis.unlink(*keys[start : start + _BATCH])
    return len(keys)


async def end_stream(publisher: StreamPublisher, workflow_id: str, reason: str) -> int:
    """Write the stream's last chunk, then delete every key of the session; how many
    keys were deleted."""
    where = StepStream(workflow_id, message_id="", step=-1, source="workflow")
    await publisher.publish(where, [session_end_chunk(reason)])
    return await erase_keys(publisher.redis, workflow_id, prefix=publisher.prefix)
