"""A payload store in a directory: one file per payload, named by its SHA-256, under the
namespace of the session it belongs to (`storage.namespaces`).

For one machine (the local stack, tests): every worker and client of the stack must see
the same directory. Files are written to a temporary name, fsync'd and renamed into
place (then the directory is fsync'd), so a reader never sees half a payload and several
processes can store the same payload at once: they write the same bytes under the same
name. A payload is never rewritten; payloads are deleted only with their session
(`erase_session`), when it is deleted.
Payloads are the owner's alone: files 0600, directories (the store's own too, when it
makes them) 0700, since they hold sessions' messages and tool output.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from sessionflow.errors import SessionNotFound
from sessionflow.storage.namespaces import (
    BORROWS_DIR,
    ERASED_MARK,
    HOLDS_DIR,
    NAMESPACE_CLAIM,
    SESSIONS_DIR,
    is_namespace,
    namespace_of,
    session_namespace,
)

FILE_DRIVER_NAME = "sessionflow.files"
HASH = "sha256"


class PayloadMissing(FileNotFoundError):
    """A reference names a payload the store does not have (another store, or deleted)."""


class FileStorageDriver(StorageDriver):
    """Payloads as files `<root>/sessions/<namespace>/sha256/<2 hex>/<64 hex>`,
    content-addressed within their session's namespace (`<root>/sha256/...` for
    payloads of no session, and those stored before namespaces)."""

    def __init__(self, root: Path, *, driver_name: str = FILE_DRIVER_NAME) -> None:
        self.root = root.absolute()
        self._name = driver_name

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return FILE_DRIVER_NAME

    def path_of(self, digest: str, namespace: str | None = None) -> Path:
        base = self.root if namespace is None else self.namespace_dir(namespace)
        return base / HASH / digest[:2] / digest

    def namespace_dir(self, namespace: str) -> Path:
        return self.root / SESSIONS_DIR / namespace

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        namespace = namespace_of(context)
        blobs = [payload.SerializeToString() for payload in payloads]
        return await asyncio.to_thread(lambda: [self._write(blob, namespace) for blob in blobs])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        del context
        return await asyncio.to_thread(lambda: [self._read(claim) for claim in claims])

    async def erase_session(self, workflow_id: str) -> bool:
        """Delete the session's namespace; when other sessions hold it, mark it erased
        instead and return False (see `storage.namespaces`)."""
        return await asyncio.to_thread(self._erase, session_namespace(workflow_id))

    async def hold(
        self,
        workflow_id: str,
        fork_workflow_id: str,
        *,
        keep: Sequence[StorageDriverClaim] = (),
    ) -> None:
        """Hold the session's namespace, and every namespace it borrows, for the fork;
        `SessionNotFound` if a payload of `keep` is gone (`storage.namespaces`)."""
        await asyncio.to_thread(
            self._hold, session_namespace(workflow_id), session_namespace(fork_workflow_id), keep
        )

    def _hold(self, namespace: str, fork: str, keep: Sequence[StorageDriverClaim]) -> None:
        with self._locked():
            for claim in keep:
                digest = claim.claim_data.get("hash_value", "")
                if not self.path_of(digest, claim.claim_data.get(NAMESPACE_CLAIM)).is_file():
                    raise SessionNotFound(
                        "the session forked was deleted: its transcript can no longer be held"
                    )
            directory = self.namespace_dir(namespace)
            held = [namespace, *_names(directory / BORROWS_DIR)]
            for other in held:
                _mark(self.namespace_dir(other) / HOLDS_DIR / fork)
                _mark(self.namespace_dir(fork) / BORROWS_DIR / other)

    def _erase(self, namespace: str) -> bool:
        with self._locked():
            return self._erase_unlocked(namespace)

    def _erase_unlocked(self, namespace: str) -> bool:
        directory = self.namespace_dir(namespace)
        if _names(directory / HOLDS_DIR):
            (directory / ERASED_MARK).touch(mode=0o600)
            return False
        borrowed = _names(directory / BORROWS_DIR)
        shutil.rmtree(directory, ignore_errors=True)
        for other in borrowed:
            # Release this session's hold; a namespace erased while held goes now.
            held = self.namespace_dir(other)
            (held / HOLDS_DIR / namespace).unlink(missing_ok=True)
            if (held / ERASED_MARK).exists() and not _names(held / HOLDS_DIR):
                self._erase_unlocked(other)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's lock for holds and erasures (several processes share a store):
        `flock` on the `sessions` directory itself, so no lock file is left behind."""
        sessions = self.root / SESSIONS_DIR
        if not sessions.is_dir():
            for made in _make_private_dirs(sessions):
                _fsync_dir(made.parent)
        fd = os.open(sessions, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, blob: bytes, namespace: str | None = None) -> StorageDriverClaim:
        if namespace is not None:
            # A new session under the id of one deleted while a fork held it: the
            # namespace is live again, so the fork's release must not delete it.
            (self.namespace_dir(namespace) / ERASED_MARK).unlink(missing_ok=True)
        digest = hashlib.sha256(blob).hexdigest()
        target = self.path_of(digest, namespace)
        if not _holds(target, len(blob)):
            if not target.parent.is_dir():
                for made in _make_private_dirs(target.parent):
                    _fsync_dir(made.parent)
            draft = target.with_name(f".{digest}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as file:
                    file.write(blob)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(draft, target)
            finally:
                draft.unlink(missing_ok=True)
            _fsync_dir(target.parent)
        claim = {"hash_algorithm": HASH, "hash_value": digest}
        if namespace is not None:
            claim[NAMESPACE_CLAIM] = namespace
        return StorageDriverClaim(claim_data=claim)

    def _read(self, claim: StorageDriverClaim) -> Payload:
        algorithm = claim.claim_data.get("hash_algorithm")
        digest = claim.claim_data.get("hash_value", "")
        namespace = claim.claim_data.get(NAMESPACE_CLAIM)
        if (
            algorithm != HASH
            or len(digest) != 64
            or not _is_hex(digest)
            or (namespace is not None and not is_namespace(namespace))
        ):
            raise ValueError(f"not a reference of the file payload store: {dict(claim.claim_data)}")
        path = self.path_of(digest, namespace)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise PayloadMissing(
                f"payload {HASH}:{digest} is not in the payload store {self.root}: every "
                "worker and client must use the same SESSIONFLOW_PAYLOAD_STORE (a file:// "
                "store serves one machine), and stored payloads must be kept as long as "
                "Temporal keeps the histories that refer to them (or its session was deleted)"
            ) from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise ValueError(f"payload {HASH}:{digest} in {path} is corrupt (its hash differs)")
        payload = Payload()
        payload.ParseFromString(blob)
        return payload


def _make_private_dirs(path: Path) -> list[Path]:
    """`path` and any missing parents, each 0700 (`mkdir(parents=True)` would make the
    parents with the default mode: a store readable by every local user); the ones
    it made, outermost first (their parents need an fsync)."""
    missing = [path, *(p for p in path.parents if not p.exists())]
    made = []
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
            made.append(directory)
        except FileExistsError:
            pass
    return made


def _names(directory: Path) -> list[str]:
    """The namespaces named by the markers in `directory` (none if it is missing)."""
    try:
        return sorted(p.name for p in directory.iterdir() if is_namespace(p.name))
    except FileNotFoundError:
        return []


def _mark(path: Path) -> None:
    """An empty marker file, durably (its directories made private)."""
    if not path.parent.is_dir():
        for made in _make_private_dirs(path.parent):
            _fsync_dir(made.parent)
    path.touch(mode=0o600)
    _fsync_dir(path.parent)


def _holds(path: Path, size: int) -> bool:
    """Whether `path` is already a complete copy (renamed into place only when whole)."""
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
