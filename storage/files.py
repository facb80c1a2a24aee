"""A payload store in a directory: one file per payload, named by its SHA-256.

For one machine (the local stack, tests): every worker and client of the stack must see
the same directory. Files are written to a temporary name, fsync'd and renamed into
place (then the directory is fsync'd), so a reader never sees half a payload and several
processes can store the same payload at once: they write the same bytes under the same
name. Nothing is ever rewritten or deleted here; a payload is immutable once stored.
Payloads are the owner's alone: files 0600, directories (the store's own too, when it
makes them) 0700, since they hold sessions' messages and tool output.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

FILE_DRIVER_NAME = "sessionflow.files"
HASH = "sha256"


class PayloadMissing(FileNotFoundError):
    """A reference names a payload the store does not have (another store, or deleted)."""


class FileStorageDriver(StorageDriver):
    """Payloads as files `<root>/sha256/<2 hex>/<64 hex>`, content-addressed."""

    def __init__(self, root: Path, *, driver_name: str = FILE_DRIVER_NAME) -> None:
        self.root = root.absolute()
        self._name = driver_name

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return FILE_DRIVER_NAME

    def path_of(self, digest: str) -> Path:
        return self.root / HASH / digest[:2] / digest

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        del context  # content addressing needs no workflow identity
        blobs = [payload.SerializeToString() for payload in payloads]
        return await asyncio.to_thread(lambda: [self._write(blob) for blob in blobs])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        del context
        return await asyncio.to_thread(lambda: [self._read(claim) for claim in claims])

    def _write(self, blob: bytes) -> StorageDriverClaim:
        digest = hashlib.sha256(blob).hexdigest()
        target = self.path_of(digest)
        if not _holds(target, len(blob)):
            if not target.parent.is_dir():
                _make_private_dirs(target.parent)
                _fsync_dir(target.parent.parent)
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
        return StorageDriverClaim(claim_data={"hash_algorithm": HASH, "hash_value": digest})

    def _read(self, claim: StorageDriverClaim) -> Payload:
        algorithm = claim.claim_data.get("hash_algorithm")
        digest = claim.claim_data.get("hash_value", "")
        if algorithm != HASH or len(digest) != 64 or not _is_hex(digest):
            raise ValueError(f"not a reference of the file payload store: {dict(claim.claim_data)}")
        path = self.path_of(digest)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise PayloadMissing(
                f"payload {HASH}:{digest} is not in the payload store {self.root}: every "
                "worker and client must use the same SESSIONFLOW_PAYLOAD_STORE (a file:// "
                "store serves one machine), and stored payloads must be kept as long as "
                "Temporal keeps the histories that refer to them"
            ) from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise ValueError(f"payload {HASH}:{digest} in {path} is corrupt (its hash differs)")
        payload = Payload()
        payload.ParseFromString(blob)
        return payload


def _make_private_dirs(path: Path) -> None:
    """`path` and any missing parents, each 0700 (`mkdir(parents=True)` would make the
    parents with the default mode: a store readable by every local user)."""
    missing = [path, *(p for p in path.parents if not p.exists())]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


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
