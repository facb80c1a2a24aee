"""A host uid of its own for each sandbox, when the worker runs as root.

Commands of every sandbox used to run as one host uid, and what the kernel counts
per uid they then shared: one sandbox could use up the inotify instances, the
process count (RLIMIT_NPROC) or the keyrings of all the others. Each sandbox now has
its own uid (and gid alike) from a range `base .. base + count - 1`: chosen from a
hash of its id, the next free one on a collision, and recorded beside the
workspaces (`<root>/.uids/`, where no sandbox can see it) so that it stays the
sandbox's own across commands and worker restarts. A uid is claimed by creating
`.uids/taken/<uid>` exclusively, so two workers sharing a root never hand one uid to
two sandboxes. With `count` 1, every sandbox has the same uid (the old way).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

UIDS = ".uids"
DEFAULT_BASE = 1_900_000_000
DEFAULT_COUNT = 65_536
_HIGHEST = 2**32 - 2  # (uid_t)-1 means "no change" to the kernel


@dataclass(frozen=True)
class HostUids:
    """The range sandboxes' host uids come from."""

    base: int = DEFAULT_BASE
    count: int = DEFAULT_COUNT

    def __post_init__(self) -> None:
        if self.base < 1 or self.count < 1 or self.base + self.count - 1 > _HIGHEST:
            raise ValueError(
                f"sandbox uids {self.base} + {self.count} must lie within 1 .. {_HIGHEST}"
            )

    def describe(self) -> str:
        if self.count == 1:
            return f"host uid {self.base} for every sandbox"
        return f"a host uid per sandbox from {self.base}..{self.base + self.count - 1}"

    def of(self, root: Path, sandbox_id: str) -> int:
        """The sandbox's uid: as recorded, else allocated and recorded now."""
        if self.count == 1:
            return self.base
        record = root / UIDS / "sandbox" / sandbox_id
        with contextlib.suppress(FileNotFoundError, ValueError):
            uid = int(record.read_text())
            if self.base <= uid < self.base + self.count:
                return uid
        return self._allocate(root, sandbox_id, record)

    def _allocate(self, root: Path, sandbox_id: str, record: Path) -> int:
        taken = root / UIDS / "taken"
        taken.mkdir(mode=0o700, parents=True, exist_ok=True)
        record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = int.from_bytes(hashlib.sha256(sandbox_id.encode()).digest()[:8], "big")
        for step in range(self.count):
            uid = self.base + (start + step) % self.count
            claim = taken / str(uid)
            try:
                fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if claim.read_text() != sandbox_id:
                    continue
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(sandbox_id)
            partial = record.with_name(f".{sandbox_id}.partial")
            partial.write_text(str(uid))
            os.replace(partial, record)
            return uid
        raise OSError(f"all {self.count} sandbox uids from {self.base} are taken")

    def release(self, root: Path, sandbox_id: str) -> None:
        """Give the sandbox's uid back (the sandbox is gone)."""
        if self.count == 1:
            return
        record = root / UIDS / "sandbox" / sandbox_id
        with contextlib.suppress(FileNotFoundError, ValueError):
            uid = int(record.read_text())
            claim = root / UIDS / "taken" / str(uid)
            if claim.read_text() == sandbox_id:
                claim.unlink()
        record.unlink(missing_ok=True)
