"""Let Temporal's native threads finish their Python callbacks before the interpreter
tears down.

The Temporal SDK completes each client call on one of its Rust (tokio) threads, which
takes the GIL to hand the answer to the event loop. That callback can lose the GIL
half-way (its write to the loop's wake-up socket releases it), and the main thread,
which now has its answer, may run to the end of the program. If the interpreter starts
finalizing before the callback takes the GIL back, CPython ends that thread inside the
callback and the process aborts ("PyGILState_Release: thread state ... must be current
when releasing", exit -6), in about one short-lived client program in thirty here
(temporalio/sdk-python#300). Skipping teardown with `os._exit` would hide the user's own
exit handlers and buffered output, so instead an exit handler, which runs before
finalization starts, gives up the GIL until no such callback is left in Python code.
That narrows the window rather than closing it: a callback still waiting for the GIL
has no Python frame to be seen by, and gets only the first yield.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time

# Long enough for a callback that lost the GIL to take it back and finish; short enough
# not to be felt when a program exits.
FIRST_YIELD_SECONDS = 0.005
# A native thread still in Python code after this is doing something else (a long
# callback of the user's own); exit anyway.
PATIENCE_SECONDS = 1.0

_installed = False


def install() -> None:
    """Register the exit handler, once per process (called for every Temporal client)."""
    global _installed
    if not _installed:
        _installed = True
        atexit.register(settle)


def native_threads_in_python() -> list[int]:
    """Ids of threads running Python code that `threading` did not start: native
    threads inside a callback (a native thread that asked `threading` who it is counts
    too: it is listed as a dummy thread)."""
    started = {
        thread.ident
        for thread in threading.enumerate()
        if not isinstance(thread, threading._DummyThread)
    }
    return [ident for ident in sys._current_frames() if ident not in started]


def settle() -> None:
    """Give up the GIL until no native thread is inside a Python callback (at most
    PATIENCE_SECONDS), so none is cut off by finalization."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    # A callback waiting for the GIL has no Python frame yet: yield once regardless.
    time.sleep(FIRST_YIELD_SECONDS)
    while native_threads_in_python() and time.monotonic() < deadline:
        time.sleep(0.001)
