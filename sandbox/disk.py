"""A sandbox's workspace as a filesystem of fixed size: its disk share.

A file size limit bounds each file, not their number; a command could leave
gigabytes in its workspace, and the workspace outlives the command. So each
workspace is an ext4 image of `size` bytes (`<root>/.disks/<id>.ext4`, sparse: it
takes on the host only what is written), loop-mounted on the workspace directory:
the kernel answers ENOSPC past the share, to the command and to the worker's file
tools alike. The mount also hides the host path: inside the sandbox, the workspace
is the root of its own filesystem, so `/proc/self/mountinfo` shows `/`, not the
directory's host path and sandbox id.

The image is the sandbox's state: it persists between commands and across worker
restarts; a workspace found unmounted (after a reboot) is mounted again before use,
and one made before disks existed has its files moved into its new image. It needs
root (mounting), `mkfs.ext4` (e2fsprogs) and `mount` (util-linux) with loop devices.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sessionflow.sandbox.cgroups import Unavailable

DISKS = ".disks"
# nosuid, nodev: nothing on the image is a way to privileges; noinit_itable: the sparse
# image is not filled with zeroed inode tables in the background.
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime,noinit_itable"
_TIMEOUT = 60.0
_MiB = 1024 * 1024


@dataclass(frozen=True)
class Disks:
    """Workspaces of `size` bytes each, under `root`."""

    root: Path
    size: int
    mkfs: str
    mount: str
    umount: str
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def describe(self) -> str:
        return f"{self.size // _MiB} MiB ext4 image per workspace"

    def image(self, workspace: Path) -> Path:
        return workspace.parent / DISKS / f"{workspace.name}.ext4"

    def ensure(self, workspace: Path) -> None:
        """The workspace's image made (if new) and mounted on it (if not already).
        Held under a lock on the image, so two workers (or threads) never mount it
        twice."""
        image = self.image(workspace)
        image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        workspace.mkdir(parents=True, exist_ok=True)
        with self._lock, _locked(image.parent / f"{workspace.name}.lock"):
            if os.path.ismount(workspace):
                return
            if not image.exists():
                self._make(image)
            if any(workspace.iterdir()):
                self._adopt(image, workspace)
            self._mount(image, workspace)

    def remove(self, workspace: Path) -> None:
        """Unmount the workspace and delete its image (the sandbox is gone for good)."""
        image = self.image(workspace)
        with self._lock, _locked(image.parent / f"{workspace.name}.lock"):
            if os.path.ismount(workspace):
                self._unmount(workspace)
            image.unlink(missing_ok=True)
        (image.parent / f"{workspace.name}.lock").unlink(missing_ok=True)

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=_TIMEOUT, check=False
        )
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise OSError(f"{' '.join(argv[:2])} failed: {said}")

    def _make(self, image: Path) -> None:
        partial = image.with_suffix(".partial")
        with open(partial, "wb") as f:
            f.truncate(self.size)
        # No blocks reserved for root: the worker's file tools write as root, and
        # must stay inside the share as the command does.
        self._run(
            self.mkfs, "-q", "-F", "-m", "0", "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", str(partial),
        )  # fmt: skip
        os.replace(partial, image)

    def _mount(self, image: Path, workspace: Path) -> None:
        self._run(self.mount, "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(workspace))
        # ext4's lost+found would show in every listing of the workspace.
        with contextlib.suppress(OSError):
            os.rmdir(workspace / "lost+found")

    def _unmount(self, workspace: Path) -> None:
        try:
            self._run(self.umount, str(workspace))
        except OSError:
            self._run(self.umount, "-l", str(workspace))  # busy: detach it anyway

    def _adopt(self, image: Path, workspace: Path) -> None:
        """Move the files of a workspace made before disks into its image."""
        with tempfile.TemporaryDirectory(dir=image.parent) as staging:
            self._mount(image, Path(staging))
            try:
                for entry in list(workspace.iterdir()):
                    shutil.move(str(entry), os.path.join(staging, entry.name))
            finally:
                self._unmount(Path(staging))

    def probe(self) -> None:
        """Make, mount and remove a small image; `Unavailable` saying why not."""
        try:
            # Not under `root`: making the backend must not create its directory.
            with tempfile.TemporaryDirectory(prefix="sessionflow-disk-probe-") as scratch:
                small = Disks(Path(scratch), 16 * _MiB, self.mkfs, self.mount, self.umount)
                workspace = Path(scratch) / "probe"
                small.ensure(workspace)
                mounted = os.path.ismount(workspace)
                small.remove(workspace)
                if not mounted:
                    raise OSError("the image did not mount")
        except (OSError, subprocess.SubprocessError) as err:
            raise Unavailable(f"cannot loop-mount a workspace image: {err}") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield None
    finally:
        os.close(fd)


def setup(root: Path, size: int) -> Disks:
    """Disks of `size` bytes under `root`, probed; `Unavailable` saying what is missing."""
    if os.geteuid() != 0:
        raise Unavailable("mounting workspace images needs the worker to run as root")
    tools = {name: shutil.which(name) for name in ("mkfs.ext4", "mount", "umount")}
    missing = [name for name, found in tools.items() if found is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (apt-get install e2fsprogs mount)")
    disks = Disks(root, size, str(tools["mkfs.ext4"]), str(tools["mount"]), str(tools["umount"]))
    disks.probe()
    return disks
