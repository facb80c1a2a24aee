"""A lock shared by every process of an S3 payload store: one object, taken with a
conditional write.

Why: holds and erasures of session namespaces (`storage.s3_namespaces`) must not
interleave, or a fork's hold could land between an erase's look for holds and its
delete, and the fork would be left with deleted segments. The file store takes a
`flock`; S3 has none, but it has conditional writes (AWS since 2024; MinIO, Ceph RGW
and moto too): a `PutObject` with `If-None-Match: *` succeeds for exactly one of
several writers of a missing key, `If-Match: <etag>` replaces (or deletes) an object
only if it is still the version read. That is enough for a lease:

- take: put the lock object with `If-None-Match: *`; its body names the taker, with
  a random token so every taking has an ETag of its own;
- wait: on 412 (held), read the lock's ETag and try again with backoff;
- expire: a holder that crashed must not wedge every fork and delete. A waiter that
  has seen the *same* ETag for `ttl` seconds of its own monotonic clock takes the lock
  over with `If-Match: <that etag>` (so of several waiters one wins). No clocks are
  compared between machines: the waiter started watching after the holder's put
  landed, so a takeover comes at least `ttl` after the holder took the lock;
- hold: the holder starts writes only within the first half of the lease
  (`Lease.check`), leaving `ttl / 2` for a write sent in time to land. The sections
  this lock guards are a handful of small requests; one that stalls longer fails
  (`LockLost`, retried by the activity) rather than write without the lock. A request
  that stays in flight longer than `ttl / 2` and lands after a takeover is the one
  case a lease cannot exclude;
- release: delete with `If-Match: <our etag>`, so a holder that overran its lease
  never deletes its successor's lock.

What a waiter has seen is remembered on the lock object across calls, so activity
attempts that each wait less than `ttl` (a local activity's 30 s) still add up to a
takeover.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import structlog

from sessionflow.errors import ConnectionFailed

log = structlog.get_logger(__name__)

# A crashed holder's lock is taken over after this long; holders write only within half.
DEFAULT_TTL_SECONDS = 15.0
# How long one call waits for the lock before it fails (retryable).
DEFAULT_WAIT_SECONDS = 20.0
_FIRST_BACKOFF = 0.02
_LAST_BACKOFF = 0.5


class LockObjects(Protocol):
    """The conditional object operations a lock needs (`LazyS3Client` has them)."""

    async def put_if_absent(self, *, bucket: str, key: str, data: bytes) -> str | None:
        """Write `key` if no object has it; its ETag, or None if one had."""
        ...

    async def put_if_match(self, *, bucket: str, key: str, data: bytes, etag: str) -> str | None:
        """Replace `key` if its ETag is `etag`; the new ETag, or None if it was not."""
        ...

    async def etag_of(self, *, bucket: str, key: str) -> str | None:
        """The ETag of `key`, or None if there is no such object."""
        ...

    async def delete_if_match(self, *, bucket: str, key: str, etag: str) -> bool:
        """Delete `key` if its ETag is `etag`; whether it was deleted."""
        ...


class LockLost(ConnectionFailed):
    """The lease ran out before the guarded work was done (another process may have
    the lock now); the work is retried from the start."""


class LockBusy(ConnectionFailed):
    """Another process held the lock for longer than a call waits."""


class Lease:
    """The lock, held: `check()` before every write it guards."""

    def __init__(self, writes_until: float) -> None:
        self._writes_until = writes_until

    def check(self) -> None:
        if time.monotonic() > self._writes_until:
            raise LockLost(
                "the payload store's lock was held too long for its lease (the store is "
                "slow to answer); the operation is retried"
            )


class BucketLock:
    """An exclusive lock on one object key of a bucket (see the module docstring)."""

    def __init__(
        self,
        objects: LockObjects,
        bucket: str,
        key: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        wait: float = DEFAULT_WAIT_SECONDS,
    ) -> None:
        self.objects = objects
        self.bucket = bucket
        self.key = key
        self.ttl = ttl
        self.wait = wait
        # The holder's ETag this process has seen, and since when (its monotonic clock).
        self._seen: tuple[str, float] | None = None

    @asynccontextmanager
    async def held(self) -> AsyncIterator[Lease]:
        """Hold the lock for the block; `LockBusy` after `wait` seconds without it."""
        body = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(16)}
        ).encode()
        etag, taken_at = await self._take(body)
        try:
            yield Lease(taken_at + self.ttl / 2)
        finally:
            # Shielded: a cancelled activity still gives the lock back.
            await asyncio.shield(self._release(etag))

    async def _take(self, body: bytes) -> tuple[str, float]:
        """Our ETag, and when we sent the put that took the lock (monotonic)."""
        give_up = time.monotonic() + self.wait
        backoff = _FIRST_BACKOFF
        while True:
            sent = time.monotonic()
            etag = await self.objects.put_if_absent(bucket=self.bucket, key=self.key, data=body)
            if etag is not None:
                return etag, sent
            holder = await self.objects.etag_of(bucket=self.bucket, key=self.key)
            if holder is not None and (taken := await self._take_over(holder, body)):
                return taken
            if time.monotonic() >= give_up:
                raise LockBusy(
                    f"the payload store's lock s3://{self.bucket}/{self.key} stayed held "
                    f"for {self.wait:.0f} s (a fork or delete of another session); retried"
                )
            if holder is not None:  # None: released since our put, so try again now
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, _LAST_BACKOFF)

    async def _take_over(self, holder: str, body: bytes) -> tuple[str, float] | None:
        """The lock, if its holder `holder` has kept it unchanged for `ttl` seconds of
        our clock (it crashed, or overran its lease) and no other waiter took it first."""
        now = time.monotonic()
        if self._seen is None or self._seen[0] != holder:
            self._seen = (holder, now)
            return None
        if now - self._seen[1] < self.ttl:
            return None
        sent = time.monotonic()
        etag = await self.objects.put_if_match(
            bucket=self.bucket, key=self.key, data=body, etag=holder
        )
        if etag is None:
            return None
        log.warning(
            "took over the payload store's lock from a holder that kept it past its "
            "lease (crashed?)",
            key=self.key,
            seconds=round(now - self._seen[1], 1),
        )
        return etag, sent

    async def _release(self, etag: str) -> None:
        try:
            released = await self.objects.delete_if_match(
                bucket=self.bucket, key=self.key, etag=etag
            )
        except Exception as err:  # it expires after `ttl`; the work itself is done
            log.warning("could not release the payload store's lock", error=str(err))
            return
        if not released:
            log.warning("the payload store's lock was taken over before release", key=self.key)
