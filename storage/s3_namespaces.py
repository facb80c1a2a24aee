"""Session namespaces in an S3 payload store: holds, erasures and their lock.

The layout and its rules are the file store's (`storage.namespaces`), as object keys
under the store's prefix:

    <prefix>/sessions/<ns>/sha256/<2 hex>/<64 hex>    the session's payloads
    <prefix>/sessions/<ns>/holds/<other ns>          another session's hold on them
    <prefix>/sessions/<ns>/borrows/<other ns>        a hold this session placed
    <prefix>/sessions/<ns>/erased                    erased while held
    <prefix>/sessions/<ns>/deleting                  being deleted (below)
    <prefix>/sessions/lock                           the lock (`storage.s3_lock`)

Why a lock: without one a hold could be written between an erase's listing of holds
and its delete, and the fork would keep references to deleted segments. An ordering
argument alone (write a mark, then look at the other side's) can make one of the two
sides notice the other, but not decide which side wins without a second round that
can leave a namespace marked and never deleted; S3's conditional writes give a real
lock instead (`BucketLock`), and every fork and delete of the store takes it.

Why `deleting`: deleting a namespace means listing and deleting every object in it,
possibly thousands, in batches of 1000; that must not run under a lease of seconds.
So under the lock an erase only decides: it writes `deleting` on every namespace to
go (the session's, and those it borrowed whose last hold it releases), removes its
holds, then gives the lock back and deletes. A hold refuses a namespace marked
`deleting` (`SessionNotFound`), so nothing can hold what is already doomed; the mark
is deleted last, and an erase that finds it (a crashed or cancelled delete, retried)
finishes the job, the borrowed namespaces before the session's own, whose `borrows`
markers are how they are found again.

A new session under a deleted session's id revives its namespace, as in the file
store: every write into a namespace deletes its `erased` mark (a DELETE request, free
on AWS, sent beside the upload), so a fork's release later leaves it be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from sessionflow.errors import SessionNotFound
from sessionflow.storage.namespaces import (
    BORROWS_DIR,
    ERASED_MARK,
    HOLDS_DIR,
    SESSIONS_DIR,
    is_namespace,
)
from sessionflow.storage.s3_lock import BucketLock, Lease, LockObjects

DELETING_MARK = "deleting"
LOCK_NAME = "lock"
HASH = "sha256"


class NamespaceObjects(LockObjects, Protocol):
    """The object operations namespaces need (`LazyS3Client` has them)."""

    async def put_small(self, *, bucket: str, key: str, data: bytes) -> None: ...

    async def object_exists(self, *, bucket: str, key: str) -> bool: ...

    async def list_keys(self, *, bucket: str, prefix: str) -> list[str]:
        """Every key under `prefix` (all pages)."""
        ...

    async def delete_keys(self, *, bucket: str, keys: Sequence[str]) -> None:
        """Delete `keys` (missing ones are no error), in batches of 1000."""
        ...


class S3Namespaces:
    """Holds and erasures of session namespaces in one bucket under one prefix."""

    def __init__(self, objects: NamespaceObjects, bucket: str, prefix: str = "") -> None:
        self.objects = objects
        self.bucket = bucket
        self.prefix = prefix  # "" or ending in "/"
        self.lock = BucketLock(objects, bucket, f"{prefix}{SESSIONS_DIR}/{LOCK_NAME}")

    # -- keys -----------------------------------------------------------------------

    def root(self, namespace: str) -> str:
        return f"{self.prefix}{SESSIONS_DIR}/{namespace}/"

    def payload_key(self, namespace: str, digest: str) -> str:
        return f"{self.root(namespace)}{HASH}/{digest[:2]}/{digest}"

    # -- writing --------------------------------------------------------------------

    async def revive(self, namespace: str) -> None:
        """A write into `namespace`: it is live again if it was erased while held."""
        await self.objects.delete_keys(
            bucket=self.bucket, keys=[self.root(namespace) + ERASED_MARK]
        )

    # -- holds ----------------------------------------------------------------------

    async def hold(self, namespace: str, fork: str, keep: Sequence[str] = ()) -> None:
        """Hold `namespace` and every namespace it borrows for `fork`; `SessionNotFound`
        if one of them is being deleted, or an object of `keep` (keys the fork refers
        to) is gone: under the lock, a namespace with neither `deleting` nor a missing
        object is not doomed (an erase decides and marks under the lock, and deletes its
        mark after every other object), so the erase that comes later sees the hold."""
        async with self.lock.held() as lease:
            held = [namespace, *await self._names(namespace, BORROWS_DIR)]
            doomed = await asyncio.gather(
                *(self._marked(n, DELETING_MARK) for n in held),
                *(self._gone(key) for key in keep),
            )
            if any(doomed):
                raise SessionNotFound(
                    "the session forked was deleted: its transcript can no longer be held"
                )
            for other in held:
                # The hold first: a `borrows` marker always has its hold beside it.
                await self._mark(lease, other, f"{HOLDS_DIR}/{fork}")
                await self._mark(lease, fork, f"{BORROWS_DIR}/{other}")

    # -- erasing --------------------------------------------------------------------

    async def erase(self, namespace: str) -> bool:
        """Delete the namespace, or mark it erased and return False when others hold it;
        releases its holds, deleting namespaces erased while held whose last hold it was."""
        async with self.lock.held() as lease:
            if not await self._marked(namespace, DELETING_MARK) and await self._names(
                namespace, HOLDS_DIR
            ):
                await self._mark(lease, namespace, ERASED_MARK)
                return False
            doomed = await self._doom(lease, namespace, [])
        # Borrowed namespaces first: the session's `borrows` markers find them again if
        # this is cut short.
        for other in reversed(doomed):
            await self._delete_all(other)
        return True

    async def _doom(self, lease: Lease, namespace: str, doomed: list[str]) -> list[str]:
        """Mark `namespace` `deleting` and release its holds; `doomed` plus it and every
        borrowed namespace that goes with it, in the order they were doomed."""
        lease.check()
        await self._mark(lease, namespace, DELETING_MARK)
        doomed.append(namespace)
        for other in await self._names(namespace, BORROWS_DIR):
            if other in doomed:
                continue  # a cycle (ids reused): already going
            lease.check()
            await self.objects.delete_keys(
                bucket=self.bucket, keys=[f"{self.root(other)}{HOLDS_DIR}/{namespace}"]
            )
            if await self._marked(other, DELETING_MARK) or (
                await self._marked(other, ERASED_MARK) and not await self._names(other, HOLDS_DIR)
            ):
                await self._doom(lease, other, doomed)
        return doomed

    async def _delete_all(self, namespace: str) -> None:
        """Every object of the namespace, its `deleting` mark last."""
        mark = self.root(namespace) + DELETING_MARK
        keys = await self.objects.list_keys(bucket=self.bucket, prefix=self.root(namespace))
        await self.objects.delete_keys(bucket=self.bucket, keys=[k for k in keys if k != mark])
        await self.objects.delete_keys(bucket=self.bucket, keys=[mark])

    # -- markers --------------------------------------------------------------------

    async def _names(self, namespace: str, folder: str) -> list[str]:
        """The namespaces named by the markers in the namespace's `folder`."""
        below = f"{self.root(namespace)}{folder}/"
        keys = await self.objects.list_keys(bucket=self.bucket, prefix=below)
        return sorted(name for k in keys if is_namespace(name := k[len(below) :]))

    async def _gone(self, key: str) -> bool:
        return not await self.objects.object_exists(bucket=self.bucket, key=key)

    async def _marked(self, namespace: str, mark: str) -> bool:
        return await self.objects.object_exists(bucket=self.bucket, key=self.root(namespace) + mark)

    async def _mark(self, lease: Lease, namespace: str, mark: str) -> None:
        lease.check()
        await self.objects.put_small(bucket=self.bucket, key=self.root(namespace) + mark, data=b"")
