"""Stops the local stack's servers when the process that started them dies, however it dies.

`LocalStack` runs this file (standard library only, so it starts in milliseconds)
in a session of its own, beside its servers, and holds the write end of a pipe to its
stdin, sending one line per server: `watch <pid>` when it starts one, `forget <pid>`
when it has stopped it. End of file on the pipe means the owner is gone: it exited or
was SIGKILLed (the kernel closes a dead process's descriptors either way). Each server
leads a process group of its own, so the guard then sends SIGTERM to every watched
group (Redis writes its append-only file, Temporal closes its database), and SIGKILL
to whatever is left of them after `GRACE` seconds, children of the servers included.

SIGINT and SIGHUP are ignored: Ctrl-C in the owner's terminal is the owner's to handle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE = 10.0


def _gone(pid: int) -> bool:
    """Whether the group leader `pid` has exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watched: set[int] = set()
    for line in sys.stdin:
        verb, _, pid = line.strip().partition(" ")
        if verb == "watch" and pid.isdigit():
            watched.add(int(pid))
        elif verb == "forget" and pid.isdigit():
            watched.discard(int(pid))
    # The owner is gone: stop what it left behind.
    for pid in watched:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    running = set(watched)
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = {pid for pid in running if not _gone(pid)}
    for pid in watched:  # stragglers, and anything the servers started in their groups
        _signal_group(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
