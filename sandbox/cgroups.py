"""A sandbox's share of the machine's memory, processes and CPU, held by a cgroup.

Resource limits (`ulimit`) bound each process, and only each: six processes of 1 GiB
are 6 GiB. A control group bounds all of a sandbox's processes together, whatever
they fork, and the kernel enforces it (over its memory, the group's own processes are
OOM-killed, not the worker's).

Layout: a group per sandbox, `<worker's group>/sessionflow/<sandbox id>`, holds the
limits; each command runs in a leaf of its own below it (`cmd-<random>`), so that
commands of one sandbox running at once share one share, and a command's end
removes its leaf and, when no other command is left, the sandbox's group.

Both hierarchies are supported, detected at start:

- cgroup v2 (most current hosts): one directory per group. The worker's group must
  have `memory`, `pids` and `cpu` in `cgroup.controllers` (delegated to it). Since a
  v2 group with processes cannot hand controllers down (the no-internal-processes
  rule), the worker first moves its group's processes to a leaf, `<group>/worker`,
  as container runtimes do with a delegated group; then enables the controllers in
  `cgroup.subtree_control`.
- cgroup v1: one hierarchy per controller, mounted at `/sys/fs/cgroup/<controller>`;
  a group is a directory in each of `memory`, `pids` and `cpu`.

A command joins its leaf before anything of it runs: its first host process is a
`/bin/sh` that writes its own pid into the leaf's `cgroup.procs`, then execs
bubblewrap (no `preexec_fn` in a threaded worker; see `isolation`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CONTROLLERS = ("memory", "pids", "cpu")
GROUP = "sessionflow"
WORKER_LEAF = "worker"
CPU_PERIOD_US = 100_000
_MiB = 1024 * 1024
_BUSY = (errno.EBUSY, errno.ENOTEMPTY)


class Unavailable(Exception):
    """This host cannot hold sandboxes to a share with cgroups; says why."""


@dataclass(frozen=True)
class Share:
    """What one sandbox may use, all its processes and commands together."""

    memory_bytes: int = 4096 * _MiB
    processes: int = 512
    cpu_percent: int = 100  # of one CPU
    disk_bytes: int = 2048 * _MiB  # its workspace (`sandbox.disk`)

    def __post_init__(self) -> None:
        if self.memory_bytes < 16 * _MiB:
            raise ValueError("a sandbox's memory share must be at least 16 MiB")
        if self.processes < 1 or self.cpu_percent < 1:
            raise ValueError("a sandbox's process and CPU shares must be positive")
        if self.disk_bytes < 16 * _MiB:
            raise ValueError("a sandbox's disk share must be at least 16 MiB")

    def describe(self) -> str:
        return (
            f"{self.memory_bytes // _MiB} MiB memory, {self.processes} processes, "
            f"{self.cpu_percent}% of a CPU"
        )


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_count(path: Path, key: str) -> int:
    """A `key value` line of a cgroup stats file (0 when absent)."""
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


@dataclass(frozen=True)
class Command:
    """One command's place: its leaves (one per hierarchy it must join) and its
    sandbox's groups."""

    hierarchy: Hierarchy
    sandbox: tuple[Path, ...]
    leaves: tuple[Path, ...]

    @property
    def procs_files(self) -> list[str]:
        return [str(leaf / "cgroup.procs") for leaf in self.leaves]

    def join_argv(self) -> list[str]:
        """What starts the command's first process in its leaves before exec'ing the
        argv that follows (`/bin/sh`, so it runs in a fresh process of our own)."""
        script = (
            'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        )
        return ["/bin/sh", "-c", script, "sessionflow-cgroup", *self.procs_files, "--"]

    def oom_kills(self) -> int:
        """Processes of the sandbox the kernel has killed for its memory share."""
        return self.hierarchy.oom_kills(self.sandbox, self.leaves)

    def remove(self, limit: float = 5.0) -> None:
        """Remove the leaves (killing what is left in them) and the sandbox's groups
        unless another command still uses them."""
        deadline = time.monotonic() + limit
        for leaf in self.leaves:
            while True:
                try:
                    os.rmdir(leaf)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno not in _BUSY or time.monotonic() > deadline:
                        break
                    _kill_members(leaf)
                    time.sleep(0.01)
        for group in self.sandbox:
            with contextlib.suppress(OSError):  # busy: another command's leaf is there
                os.rmdir(group)


def _kill_members(group: Path) -> None:
    with contextlib.suppress(OSError):
        for line in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(line), signal.SIGKILL)


@dataclass(frozen=True)
class Hierarchy:
    """Where sandbox groups are made: `parents` maps each controller to the directory
    that holds the sandboxes' groups (one directory for all three under v2)."""

    version: Literal[1, 2]
    parents: dict[str, Path]

    def describe(self) -> str:
        where = sorted({str(p) for p in self.parents.values()})
        return f"cgroup v{self.version} ({', '.join(where)})"

    def _dirs(self) -> list[Path]:
        return sorted(set(self.parents.values()))

    def prepare(self, sandbox_id: str, share: Share) -> Command:
        """The sandbox's groups, made if missing, with its share written; a new leaf
        for one command. Raises `OSError` when the cgroup files refuse."""
        sandbox = tuple(parent / sandbox_id for parent in self._dirs())
        token = f"cmd-{uuid.uuid4().hex[:12]}"
        for _ in range(5):
            for group in sandbox:
                group.mkdir(exist_ok=True)
            self._limit(sandbox_id, share)
            leaves = []
            try:
                for group in sandbox:
                    leaf = group / token
                    leaf.mkdir()
                    leaves.append(leaf)
            except FileNotFoundError:
                # Another command's end removed the sandbox's group in between: again.
                for leaf in leaves:
                    with contextlib.suppress(OSError):
                        os.rmdir(leaf)
                continue
            return Command(self, sandbox, tuple(leaves))
        raise OSError(errno.EAGAIN, f"the cgroup of sandbox {sandbox_id} kept vanishing")

    def _limit(self, sandbox_id: str, share: Share) -> None:
        memory = self.parents["memory"] / sandbox_id
        pids = self.parents["pids"] / sandbox_id
        cpu = self.parents["cpu"] / sandbox_id
        quota = share.cpu_percent * CPU_PERIOD_US // 100
        if self.version == 2:
            _write(memory / "memory.max", str(share.memory_bytes))
            swap = memory / "memory.swap.max"
            if swap.exists():  # no swap beyond the share: it would spill onto the host
                _write(swap, "0")
            _write(pids / "pids.max", str(share.processes))
            _write(cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        # v1: memory+swap may never be below memory alone, so it is set on both sides.
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            with contextlib.suppress(OSError):
                _write(memsw, str(share.memory_bytes))
        _write(memory / "memory.limit_in_bytes", str(share.memory_bytes))
        if memsw.exists():
            _write(memsw, str(share.memory_bytes))
        _write(pids / "pids.max", str(share.processes))
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(quota))

    def oom_kills(self, sandbox: tuple[Path, ...], leaves: tuple[Path, ...]) -> int:
        """OOM kills counted for the sandbox: v2 counts them for a group and its
        descendants (`memory.events`); v1 only in the victim's own group, the leaf."""
        if self.version == 2:
            memory = next(g for g in sandbox if g.parent == self.parents["memory"])
            return _read_count(memory / "memory.events", "oom_kill")
        leaf = next(g for g in leaves if g.parent.parent == self.parents["memory"])
        return _read_count(leaf / "memory.oom_control", "oom_kill")

    def check(self, share: Share) -> None:
        """Make, limit, join and remove a group, as a command would; `Unavailable`
        saying why not."""
        probe = f"probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            command = self.prepare(probe, share)
        except OSError as err:
            for parent in self._dirs():
                with contextlib.suppress(OSError):
                    os.rmdir(parent / probe)
            raise Unavailable(f"cannot make a cgroup under {self.describe()}: {err}") from None
        command.remove()


# -- finding the hierarchy -------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str  # the part of the hierarchy the mount shows
    point: Path
    fstype: str
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4:
            continue
        point = fields[4].replace("\\040", " ")
        options = frozenset(fields[dash + 3].split(","))
        mounts.append(_Mount(fields[3], Path(point), fields[dash + 1], options))
    return mounts


def _own_groups(self_cgroup: str) -> dict[str, str]:
    """Controller (`""` for v2) -> this process's group path, from /proc/self/cgroup."""
    groups: dict[str, str] = {}
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            groups[controller] = parts[2]
    return groups


def _under(mount: _Mount, group: str, fs_root: Path) -> Path:
    relative = os.path.relpath(group, mount.root) if mount.root != "/" else group
    if relative.startswith(".."):  # a group outside what the mount shows
        raise Unavailable(f"this process's cgroup {group} is outside the mount at {mount.point}")
    relative = "" if relative == "." else relative.lstrip("/")
    return fs_root / str(mount.point).lstrip("/") / relative


def _v2(mount: _Mount, own: str, fs_root: Path) -> Hierarchy:
    base = _under(mount, own, fs_root)
    try:
        available = set((base / "cgroup.controllers").read_text().split())
    except OSError as err:
        raise Unavailable(f"cgroup v2 at {base} is unreadable: {err}") from None
    missing = [c for c in CONTROLLERS if c not in available]
    if missing:
        raise Unavailable(
            f"cgroup v2 group {base} has no {', '.join(missing)} controller delegated to it"
        )
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    parent = base / GROUP
    try:
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        if not set(CONTROLLERS) <= enabled:
            # The worker's group hands controllers down only once it holds no process
            # itself (the hierarchy's root excepted): move them to a leaf of their own.
            if own != "/":
                _evacuate(base)
            _write(base / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)
    except OSError as err:
        raise Unavailable(f"cannot delegate cgroup v2 controllers below {base}: {err}") from None
    return Hierarchy(2, {c: parent for c in CONTROLLERS})


def _evacuate(base: Path) -> None:
    """Move every process of `base` into `base/worker`."""
    leaf = base / WORKER_LEAF
    leaf.mkdir(exist_ok=True)
    for _ in range(10):  # processes may fork while they are moved
        pids = (base / "cgroup.procs").read_text().split()
        if not pids:
            return
        for pid in pids:
            try:
                _write(leaf / "cgroup.procs", pid)
            except OSError as err:
                if err.errno != errno.ESRCH:
                    raise


def _v1(mounts: list[_Mount], groups: dict[str, str], fs_root: Path) -> Hierarchy:
    parents: dict[str, Path] = {}
    for controller in CONTROLLERS:
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is None or controller not in groups:
            raise Unavailable(f"no cgroup v1 {controller} hierarchy is mounted")
        parent = _under(mount, groups[controller], fs_root) / GROUP
        try:
            parent.mkdir(exist_ok=True)
        except OSError as err:
            raise Unavailable(f"cannot make {parent}: {err}") from None
        parents[controller] = parent
    return Hierarchy(1, parents)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def detect(
    *,
    fs_root: Path = Path("/"),
    mountinfo: str | None = None,
    self_cgroup: str | None = None,
) -> Hierarchy:
    """The hierarchy that can hold sandboxes here: cgroup v2 with the controllers
    delegated to the worker's group, else cgroup v1's controller mounts. Raises
    `Unavailable` saying what is missing. `fs_root`, `mountinfo` and `self_cgroup`
    stand in for `/`, `/proc/self/mountinfo` and `/proc/self/cgroup` in tests."""
    mounts = _mounts(mountinfo if mountinfo is not None else _read(Path("/proc/self/mountinfo")))
    groups = _own_groups(
        self_cgroup if self_cgroup is not None else _read(Path("/proc/self/cgroup"))
    )
    reasons = []
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if unified is not None and "" in groups:
        try:
            return _v2(unified, groups[""], fs_root)
        except Unavailable as err:
            reasons.append(str(err))
    try:
        return _v1(mounts, groups, fs_root)
    except Unavailable as err:
        reasons.append(str(err))
    raise Unavailable("; ".join(reasons) or "no cgroup hierarchy is mounted")


@contextlib.contextmanager
def command_group(hierarchy: Hierarchy, sandbox_id: str, share: Share) -> Iterator[Command]:
    """A leaf for one command, removed (with anything left in it) when the block ends."""
    command = hierarchy.prepare(sandbox_id, share)
    try:
        yield command
    finally:
        command.remove()
