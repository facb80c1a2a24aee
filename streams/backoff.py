"""Riding out an unreachable Redis, shared by stream writers and readers: which errors
mean "try again shortly", and how long to wait between tries.

Both retry often at first (a restart or a cluster failover takes a second or two) and
settle at one try a second, so a long outage costs Redis nothing when it comes back.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import (
    AskError,
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What redis-py raises while a server restarts or a Redis Cluster fails over, once its
# own retries are spent: the node is unreachable or still loading; the cluster is down
# or has no primary for the slot yet (CLUSTERDOWN, TRYAGAIN, a redirection loop,
# "cannot be connected", slots not covered); the primary was demoted under us
# (READONLY). `RedisClusterException` also covers a client misuse such as a cross-slot
# command; every key of one session shares a slot (`streams.keys`), so for stream
# commands it is an outage, and waiting for one ends with an error that names it.
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    AskError,
    ReadOnlyError,
    RedisClusterException,
)


def is_unreachable(err: BaseException) -> bool:
    """Whether `err` means Redis (or the slot's primary) is briefly out of reach, not
    that it refused the command."""
    if isinstance(err, _UNREACHABLE):
        return True
    # A reader blocked in XREAD on a primary that a failover turned into a replica is
    # released with "UNBLOCKED ... (master -> replica?)"; the next read is redirected.
    return isinstance(err, ResponseError) and str(err).startswith("UNBLOCKED")


class Backoff:
    """Doubling delays from `first` to `cap` seconds; `reset` after a success."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        self._first = first
        self._cap = cap
        self._delay = first

    def reset(self) -> None:
        self._delay = self._first

    async def wait(self) -> None:
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._cap)
