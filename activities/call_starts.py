"""Whether a tool call has started before: the evidence a non-retryable tool needs.

Temporal retries a tool call whose worker was lost; for most tools that is right (their
commands are recorded, see `RecordedSandbox`), but a tool that declared itself not
retryable (`tool(..., retryable=False)`) must never run twice. Each attempt marks the
call as started in Redis before the tool's code runs (`SET NX`); an attempt that finds
the mark knows an earlier one may have acted, and answers "outcome unknown" instead.
The mark lives under the session's hash-tagged prefix, so it is erased with the session.
"""

from __future__ import annotations

import hashlib

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sessionflow.streams.keys import session_prefix

log = structlog.get_logger(__name__)

# As long as a call could still be retried (Temporal's longest tool retry), with room.
STARTED_TTL_SECONDS = 7 * 24 * 3600


def idempotency_key(workflow_id: str, tool_call_id: str) -> str:
    """The same for every attempt of one call, different for every other call."""
    digest = hashlib.sha256(f"{workflow_id}\x00{tool_call_id}".encode()).hexdigest()
    return f"sf-{digest[:40]}"


async def first_start(redis: Redis, workflow_id: str, tool_call_id: str, *, prefix: str) -> bool:
    """Mark the call as started; False if an earlier attempt had marked it already.

    When Redis cannot be reached the answer is False: for a tool that must not run
    twice, not knowing is the same as "it may have run"."""
    key = f"{session_prefix(workflow_id, prefix=prefix)}:started:{tool_call_id}"
    try:
        return bool(await redis.set(key, "1", nx=True, ex=STARTED_TTL_SECONDS))
    except (RedisError, OSError) as err:
        log.warning("could not mark a tool call as started", error=str(err))
        return False
