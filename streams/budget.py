"""How many bytes of progress tool calls may write to a session's stream.

A tool's preliminary output (`tool-output-available` with `preliminary: true`) is
the whole output so far, since the AI SDK replaces the last one it showed: a command
that prints for ten minutes would otherwise write the same tail to Redis thousands of
times, kept for the stream's lifetime (issue 23: 17 kB of control characters, each
escaped to six bytes of JSON and resent in every update, made 14.5 MB in Redis in 30
seconds, some 290 MB per ten-minute command). So progress has a byte
budget, per tool call and per turn (`StreamBudget`); past it, progress is summarised
rather than streamed, and the call's final result is written as always.

A turn's tool calls run one after another in activities that may land on different
workers, so the turn's count lives in Redis, beside the session's stream:
`sf:{<workflow id>}:progress:<message id>` holds the bytes the turn's calls have
reserved. A call reserves its share when it starts (`BudgetLedger.reserve`: the
smaller of the per-call budget and what the turn has left, in one script call) and
gives back what it did not use when it ends. A call that crashes keeps its share
reserved, which only errs on the side of streaming less.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from sessionflow.streams.keys import session_prefix
from sessionflow.streams.writer import WRITE_ERRORS

log = structlog.get_logger(__name__)

# KEYS: the turn's counter. ARGV: per-call budget, per-turn budget, ttl seconds.
# Returns the bytes granted to the call.
_RESERVE_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), math.max(0, tonumber(ARGV[2]) - used))
redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return grant
"""
# KEYS: the turn's counter. ARGV: bytes given back. A counter that expired meanwhile
# is not brought back (negative, it would grant more than the budget).
_RELEASE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DECRBY', KEYS[1], ARGV[1])
end
return 0
"""


@dataclass(frozen=True)
class StreamBudget:
    """Bytes of progress (preliminary tool output, as stored in Redis) one tool call
    and one turn may stream; the final result of each call does not count."""

    per_call_bytes: int = 256 * 1024
    per_turn_bytes: int = 1024 * 1024


def progress_key(workflow_id: str, message_id: str, *, prefix: str = "sf") -> str:
    """The turn's counter, in the session's hash-tagged key space."""
    return f"{session_prefix(workflow_id, prefix=prefix)}:progress:{message_id}"


@dataclass
class BudgetLedger:
    """Hands out shares of each turn's budget to its tool calls."""

    redis: Redis
    budget: StreamBudget = StreamBudget()
    prefix: str = "sf"
    ttl_seconds: int = 7 * 24 * 3600

    def __post_init__(self) -> None:
        self._reserve = self.redis.register_script(_RESERVE_SCRIPT)
        self._release = self.redis.register_script(_RELEASE_SCRIPT)

    async def reserve(self, workflow_id: str, message_id: str) -> int:
        """The bytes this call may stream. Without Redis the call gets the per-call
        budget alone: what it streams waits in the writer for Redis to come back, and
        stays bounded."""
        key = progress_key(workflow_id, message_id, prefix=self.prefix)
        args = [self.budget.per_call_bytes, self.budget.per_turn_bytes, self.ttl_seconds]
        try:
            return int(await self._reserve(keys=[key], args=args))
        except WRITE_ERRORS as err:
            log.warning(
                "could not reserve a stream budget", workflow_id=workflow_id, error=str(err)
            )
            return self.budget.per_call_bytes

    async def release(self, workflow_id: str, message_id: str, unused: int) -> None:
        """Give back what a call did not stream (best effort)."""
        if unused <= 0:
            return
        key = progress_key(workflow_id, message_id, prefix=self.prefix)
        try:
            await self._release(keys=[key], args=[unused])
        except WRITE_ERRORS as err:
            log.debug(
                "could not give back a stream budget", workflow_id=workflow_id, error=str(err)
            )
