"""File operations confined to a workspace directory, safe against a hostile sandbox
that rearranges the workspace while they run.

Whatever runs in the sandbox may swap any directory of its workspace for a symlink at
any moment, so a path that was checked and then opened again by name can lead
somewhere else by the time it is opened. Nothing here opens a path by name from the
outside: every operation starts from a file descriptor of the workspace root and
opens its target relative to it, with `openat2(2)` and

    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

so the kernel itself refuses to leave the root (`..` past it, absolute paths) or to
follow any symlink, in the same step that opens the file. Where `openat2` is missing
(kernels before 5.6, some seccomp filters), the same rules hold by walking the path
one component at a time: each directory opened with `O_NOFOLLOW | O_DIRECTORY`
relative to the descriptor of its parent, `..` going back to a descriptor already
held, never above the root. Directories a write needs are made the same way
(`mkdir` relative to a held descriptor), listings read held descriptors
(`scandir(fd)`), and files are written through the descriptor opened with
`O_NOFOLLOW`. A swap can then make an operation fail, never reach outside.

Symlinks are refused, even those pointing inside the workspace. Following in-root
links (`RESOLVE_IN_ROOT`) would read a link to `/etc/passwd` as `<workspace>/etc/passwd`:
not an escape, but not what the link says either, and a link made by a command inside
bubblewrap names paths as the command sees them (`/workspace/...`), which mean
something else from out here. Refusing them is the same rule with and without
`openat2`, and a command (`Bash`) still sees links the way the sandbox does.

Files are opened with `O_NONBLOCK` and must be regular files: a FIFO planted in the
workspace cannot hang a worker thread. Reads are bounded (`read_text` refuses a file
over its cap without reading it; `read_lines` streams a window of lines), and so are
listings: an entry cap and a deadline, reached lazily (`_Walk`), since they run in the
worker's threads, shared by every tenant.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import heapq
import os
import platform
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionflow.errors import FileTooLarge, SandboxNotFound, SandboxRefused
from sessionflow.sandbox.base import FileEntry, FileLines, FileListing, ListingCut
from sessionflow.sandbox.lines import CHUNK_BYTES, LineWindow

# From <linux/openat2.h>.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
CONFINED = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

# openat2's number: 437 wherever Linux numbers its syscalls from the unified table.
_OPENAT2_NUMBERS = {"x86_64": 437, "aarch64": 437, "arm64": 437, "riscv64": 437}
# How often a lookup that a concurrent rename disturbed (EAGAIN) is tried again.
_EAGAIN_RETRIES = 64
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class _Openat2:
    """`openat2` through `syscall(2)`, or None-like where it cannot be used."""

    def __init__(self) -> None:
        self.number: int | None = None
        self._syscall: Any = None
        if sys.platform != "linux" or ctypes.sizeof(ctypes.c_void_p) != 8:
            return
        number = _OPENAT2_NUMBERS.get(platform.machine())
        if number is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        syscall.argtypes = [
            ctypes.c_long,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.POINTER(_OpenHow),
            ctypes.c_size_t,
        ]
        self.number, self._syscall = number, syscall
        # A seccomp filter may answer EPERM (or ENOSYS) for a syscall it does not know.
        try:
            os.close(self(-100, "/", _DIR, 0, 0))  # AT_FDCWD
        except OSError:
            self.number = self._syscall = None

    @property
    def available(self) -> bool:
        return self._syscall is not None

    def __call__(self, dir_fd: int, path: str, flags: int, mode: int, resolve: int) -> int:
        if self._syscall is None or self.number is None:
            raise OSError(errno.ENOSYS, "openat2 is not available")
        # A mode without O_CREAT (or O_TMPFILE) is EINVAL.
        creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
        how = _OpenHow(flags, mode if creates else 0, resolve)
        raw = os.fsencode(path)
        if b"\0" in raw:
            raise OSError(errno.EINVAL, "embedded null byte")
        for _ in range(_EAGAIN_RETRIES):
            fd = int(self._syscall(self.number, dir_fd, raw, ctypes.byref(how), ctypes.sizeof(how)))
            if fd >= 0:
                return fd
            code = ctypes.get_errno()
            if code not in (errno.EAGAIN, errno.EINTR):
                raise OSError(code, os.strerror(code), path)
        raise OSError(errno.EAGAIN, "the workspace kept changing during the lookup", path)


openat2 = _Openat2()


@dataclass(frozen=True)
class _Target:
    """A path as asked for (for messages) and its components, `.` and empty ones dropped."""

    asked: str
    parts: tuple[str, ...]

    @classmethod
    def of(cls, path: str) -> _Target:
        if path.startswith("/"):
            raise SandboxRefused(f"{path!r} is absolute; use a path relative to the workspace")
        if "\0" in path:
            raise SandboxRefused(f"{path!r} holds a NUL byte")
        return cls(path, tuple(p for p in path.split("/") if p not in ("", ".")))

    def normalized(self) -> tuple[str, ...]:
        """The components with `..` applied; refused if they climb above the root.
        Exact because no symlink is ever followed."""
        out: list[str] = []
        for part in self.parts:
            if part != "..":
                out.append(part)
            elif out:
                out.pop()
            else:
                raise self.outside()
        return tuple(out)

    def outside(self) -> SandboxRefused:
        return SandboxRefused(f"{self.asked!r} leads outside the workspace")

    def through_symlink(self, name: str) -> SandboxRefused:
        return SandboxRefused(
            f"{self.asked!r} goes through the symlink {name!r}; file tools do not follow "
            "symlinks, so that none leads outside the workspace (use Bash to work with it)"
        )


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_root(workspace: Path) -> int:
    """An `O_PATH` descriptor of the workspace directory itself."""
    try:
        return os.open(workspace, _DIR | os.O_NOFOLLOW)
    except OSError as err:
        raise SandboxNotFound(f"the sandbox has no workspace at {workspace}: {err}") from err


def _open_one(dir_fd: int, name: str, flags: int, mode: int, target: _Target) -> int:
    """Open one name in a held directory, never following a symlink."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise target.through_symlink(name) from None
        raise
    if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)  # O_PATH | O_NOFOLLOW opens the link itself
        raise target.through_symlink(name)
    return fd


def _walk(root_fd: int, target: _Target, flags: int, mode: int, *, make_dirs: bool) -> int:
    """Open `target` beneath `root_fd` one component at a time (`openat2`'s fallback,
    and how directories are made). With `make_dirs`, missing directories on the way are
    made; the last component is then a directory too."""
    held = [os.dup(root_fd)]
    try:
        parts = target.parts
        for index, name in enumerate(parts):
            last = index == len(parts) - 1
            if name == "..":
                if len(held) == 1:
                    raise target.outside()
                os.close(held.pop())
                continue
            if last and not make_dirs:
                return _open_one(held[-1], name, flags, mode, target)
            try:
                fd = _open_one(held[-1], name, _DIR, 0, target)
            except FileNotFoundError:
                if not make_dirs:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: open it
                    os.mkdir(name, 0o777, dir_fd=held[-1])
                fd = _open_one(held[-1], name, _DIR, 0, target)
            held.append(fd)
        # The path named a directory already held (the root, or after `..`).
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=held[-1])
    finally:
        for fd in held:
            os.close(fd)


def open_beneath(root_fd: int, target: _Target, flags: int, mode: int = 0o666) -> int:
    """Open `target` beneath the root without following any symlink or leaving it."""
    if openat2.available:
        path = "/".join(target.parts) or "."
        try:
            return openat2(root_fd, path, flags | os.O_CLOEXEC, mode, CONFINED)
        except OSError as err:
            if err.errno == errno.EXDEV:
                raise target.outside() from None
            if err.errno == errno.ELOOP:
                # The walk names the link (unless it has gone meanwhile).
                with contextlib.suppress(OSError):
                    os.close(_walk(root_fd, target, os.O_PATH, 0, make_dirs=False))
                raise target.through_symlink(path) from None
            if err.errno != errno.ENOSYS:
                raise
            openat2.number = openat2._syscall = None  # gone (a seccomp filter changed?)
    return _walk(root_fd, target, flags, mode, make_dirs=False)


def check(workspace: Path, path: str) -> Path:
    """`path` in the workspace, checked to exist beneath it without symlinks. Only for
    handing to something that opens it again by name (a command's working directory)."""
    target = _Target.of(path)
    # A missing one is for the caller to find out about.
    missing = contextlib.suppress(FileNotFoundError, NotADirectoryError)
    with _closing(open_root(workspace)) as root, missing:
        os.close(open_beneath(root, target, os.O_PATH))
    return workspace.joinpath(*target.normalized())


def _open_file(workspace: Path, target: _Target) -> int:
    """A regular file of the workspace, opened for reading."""
    with _closing(open_root(workspace)) as root:
        try:
            fd = open_beneath(root, target, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise FileNotFoundError(f"no file {target.asked!r} in the workspace") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(f"no file {target.asked!r} in the workspace")
    return fd


def read_text(workspace: Path, path: str, max_bytes: int) -> str:
    """A whole file, refused without reading it if it has more than `max_bytes` bytes."""
    target = _Target.of(path)
    with _closing(_open_file(workspace, target)) as fd:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise _too_large(path, size, max_bytes)
        data = bytearray()
        while chunk := os.read(fd, min(CHUNK_BYTES, max_bytes + 1 - len(data))):
            data += chunk
            if len(data) > max_bytes:  # it grew while being read
                raise _too_large(path, None, max_bytes)
    return data.decode("utf-8", "replace")


def _too_large(path: str, size: int | None, limit: int) -> FileTooLarge:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return FileTooLarge(
        f"{path!r} is {what}, more than the {limit} bytes read whole", size=size, limit=limit
    )


def read_lines(
    workspace: Path, path: str, *, offset: int, limit: int, max_bytes: int, scan_bytes: int
) -> FileLines:
    window = LineWindow(offset=offset, limit=limit, max_bytes=max_bytes, scan_bytes=scan_bytes)
    eof = False
    with _closing(_open_file(workspace, _Target.of(path))) as fd:
        while window.wants_more:
            chunk = os.read(fd, min(CHUNK_BYTES, window.room))
            if not chunk:
                eof = True
                break
            window.feed(chunk)
    return window.result(eof=eof)


def write_text(workspace: Path, path: str, content: str) -> None:
    """Write a file, making its directories; never through a symlink, never outside."""
    target = _Target.of(path)
    if path.rsplit("/", 1)[-1] in ("", ".", ".."):
        raise IsADirectoryError(f"{path!r} names a directory, not a file")
    parent = _Target(path, target.parts[:-1])
    data = content.encode()
    with _closing(open_root(workspace)) as root:
        try:
            try:
                directory = open_beneath(root, parent, _DIR)
            except FileNotFoundError:
                directory = _walk(root, parent, _DIR, 0, make_dirs=True)
        except NotADirectoryError:
            raise NotADirectoryError(f"{path!r}: a part of it is a file") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK
    with _closing(directory):
        try:
            fd = _open_one(directory, target.parts[-1], flags, 0o666, target)
        except IsADirectoryError:
            raise IsADirectoryError(f"{path!r} is a directory, not a file") from None
        except OSError as err:
            if err.errno != errno.ENXIO:  # a FIFO nobody reads
                raise
            raise SandboxRefused(f"{path!r} is not a regular file") from None
    with _closing(fd):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SandboxRefused(f"{path!r} is not a regular file")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def list_entries(
    workspace: Path, path: str, depth: int, *, max_entries: int, seconds: float
) -> FileListing:
    """Up to `max_entries` entries under `path`, walked for at most about `seconds`."""
    target = _Target.of(path)
    prefix = "/".join(target.normalized())
    with _closing(open_root(workspace)) as root:
        try:
            fd = open_beneath(root, target, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(f"no directory {path!r} in the workspace") from None
    walk = _Walk(max_entries, time.monotonic() + seconds)
    with _closing(fd):
        walk.visit(fd, prefix, depth)
    return FileListing(entries=walk.entries, cut=walk.cut)


class _Walk:
    """A depth-first listing that stops at an entry cap or a deadline.

    Nothing is kept that the listing cannot show: of each directory, only the entries
    the listing still has room for (plus one, to know it was cut) are kept as
    `scandir`'s iterator passes, the first by name, and the walk ends as soon as the
    listing is full. Memory is bounded by the cap times the depth, whatever the tree
    holds; time, by the deadline, checked at every entry.
    """

    def __init__(self, max_entries: int, deadline: float) -> None:
        self.entries: list[FileEntry] = []
        self.cut: ListingCut | None = None
        self._max = max_entries
        self._deadline = deadline

    def visit(self, dir_fd: int, prefix: str, depth: int) -> None:
        for child in self._children(dir_fd):
            if self.cut is not None:
                return
            if len(self.entries) >= self._max:
                self.cut = "entries"
                return
            if time.monotonic() > self._deadline:
                self.cut = "time"
                return
            name = f"{prefix}/{child.name}" if prefix else child.name
            try:
                is_dir = child.is_dir(follow_symlinks=False)
                size = 0 if is_dir else child.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # gone since the directory was read
            self.entries.append(FileEntry(path=name, is_dir=is_dir, size=size))
            if is_dir and depth > 1:
                try:
                    sub = os.open(
                        child.name,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=dir_fd,
                    )
                except OSError:
                    continue  # replaced (by a symlink, say) since it was listed
                with _closing(sub):
                    self.visit(sub, name, depth - 1)

    def _children(self, dir_fd: int) -> list[os.DirEntry[str]]:
        """The directory's first entries by name, as many as could still be listed and
        one more. The whole directory is read, but only those are kept (a heap of
        them); none once the deadline has passed."""
        wanted = self._max - len(self.entries) + 1
        with os.scandir(dir_fd) as scan:
            first = heapq.nsmallest(wanted, self._until_deadline(scan), key=lambda e: e.name)
        return [] if self.cut is not None else first

    def _until_deadline(self, scan: Iterator[os.DirEntry[str]]) -> Iterator[os.DirEntry[str]]:
        for child in scan:
            if time.monotonic() > self._deadline:
                self.cut = "time"
                return
            yield child
