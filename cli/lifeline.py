"""The local stack's servers live no longer than the process that started them.

- **A guard.** `start_guard` runs `watchdog.py` beside the servers; it stops them when
  the pipe from their owner closes, so they die with it even when it is SIGKILLed.
- **One owner per data directory**, recorded in `<data dir>/stack.owner` (pid and start
  time, so a reused pid is not mistaken for it): a second stack on the same data
  refuses to start while the owner lives (`owner_of`).
- **What a dead owner left running** (its guard killed with it, say) is found by what
  only this data directory's servers have: Temporal's database file on its command
  line, Redis's working directory (it changes its process title, not its directory);
  `stop_groups` stops them before a new stack starts. Linux only (it reads /proc);
  elsewhere the ports in use are reported instead.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sessionflow.errors import SessionflowError

OWNER_FILE = "stack.owner"
# How long a server left running by a dead owner gets to stop after SIGTERM.
STALE_GRACE = 10.0
REDIS_BINARIES = ("redis-server", "valkey-server")


class OwnershipError(SessionflowError):
    """The stack's data directory belongs to another live process, or holds a server
    that is not ours to stop."""


class Lifeline:
    """One stack's claim on its data directory, and the guard of its servers."""

    def __init__(self, data_dir: Path, say: Callable[[str], None]) -> None:
        self.data_dir = data_dir
        self._say = say
        self._guard: subprocess.Popen[bytes] | None = None

    async def claim(self) -> None:
        """Make this process the data directory's owner: refuse while another live
        process owns it; stop servers of it that a dead owner left running."""
        owner = owner_of(self.data_dir)
        if owner is not None and owner != os.getpid():
            raise OwnershipError(
                f"another process (pid {owner}, a `sessionflow dev`?) runs the stack in "
                f"{self.data_dir}: stop it first, or choose another --data-dir"
            )
        stale = servers_of(self.data_dir)
        if stale:
            names = " and ".join(f"{name} (pid {pid})" for name, pid in stale)
            self._say(
                f"Stopping {names}, left running on {self.data_dir} by an earlier stack "
                "that did not stop them (was it killed?) ..."
            )
            await stop_groups([pid for _, pid in stale])
        record_owner(self.data_dir)

    def start(self) -> None:
        """Start the guard; from now on, servers `watch`ed die with this process."""
        self._guard = start_guard()

    def watch(self, pid: int) -> None:
        self._tell(f"watch {pid}")

    def forget(self, pid: int) -> None:
        self._tell(f"forget {pid}")

    def close(self) -> None:
        """Stop the guard (the servers are stopped) and give up the data directory."""
        if self._guard is not None:
            guard, self._guard = self._guard, None
            if guard.stdin is not None:
                guard.stdin.close()  # nothing left to watch: it exits
            try:
                guard.wait(5)
            except subprocess.TimeoutExpired:
                guard.kill()
                guard.wait()
        release(self.data_dir)

    def _tell(self, line: str) -> None:
        guard = self._guard
        if guard is None or guard.stdin is None or guard.poll() is not None:
            return
        try:
            guard.stdin.write(line.encode() + b"\n")
            guard.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass


def start_guard() -> subprocess.Popen[bytes]:
    """The watchdog, in a session of its own so that the terminal's Ctrl-C and
    hang-up do not reach it; tell it `watch <pid>` / `forget <pid>` on its stdin."""
    return subprocess.Popen(
        [sys.executable, "-I", str(Path(__file__).with_name("watchdog.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None if it does not exist
    or has exited; with the pid, it names a process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    return None if fields[0] == b"Z" else fields[19].decode()


def owner_of(data_dir: Path) -> int | None:
    """The live process that owns the stack of `data_dir`, if one does."""
    try:
        pid, started = (data_dir / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid) if pid.isdigit() and start_time(int(pid)) == started else None


def record_owner(data_dir: Path) -> None:
    started = start_time(os.getpid())
    if started is not None:
        fd = os.open(data_dir / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{os.getpid()} {started}\n")


def release(data_dir: Path) -> None:
    if owner_of(data_dir) == os.getpid():
        (data_dir / OWNER_FILE).unlink(missing_ok=True)


def _is_server_of(pid: int, temporal_db: str, redis_dir: str) -> str | None:
    proc = Path(f"/proc/{pid}")
    try:
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = (a.decode(errors="replace") for a in args)
    if ("--db-filename", temporal_db) in itertools.pairwise(words):
        return "Temporal"
    try:
        binary = Path(os.readlink(proc / "exe")).name.split(" ")[0]
        if binary in REDIS_BINARIES and os.readlink(proc / "cwd") == redis_dir:
            return "Redis"
    except OSError:
        pass
    return None


def servers_of(data_dir: Path) -> list[tuple[str, int]]:
    """Running servers of the stack in `data_dir`, as (name, pid)."""
    temporal_db = str((data_dir / "temporal.db").absolute())
    redis_dir = str((data_dir / "redis").absolute())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        name = _is_server_of(pid, temporal_db, redis_dir)
        if name and pid != os.getpid() and start_time(pid):
            found.append((name, pid))
    return sorted(found)


async def stop_groups(pids: list[int]) -> None:
    """SIGTERM each process group, wait up to `STALE_GRACE` for the leaders, SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(os.getpgid(pid), sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                raise OwnershipError(
                    f"process {pid} holds this data directory and is not ours to stop"
                ) from None
        deadline = time.monotonic() + STALE_GRACE
        while time.monotonic() < deadline:
            if not any(start_time(pid) for pid in pids):
                return
            await asyncio.sleep(0.1)
