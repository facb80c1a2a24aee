"""One wait per answer, however many callers await it in this process.

Waiting for a turn's outcome is a Temporal update that the workflow holds open until
the turn ends, and Temporal allows only 10 updates in flight per workflow: the 11th
concurrent waiter on one session failed (a 500 in the gateway), and waiters of one
tenant could take all ten. So waiters on the same answer share one update: the first
starts it, the others await the same task, and when the last waiter gives up (a
long-poll's `?wait=` runs out) the update is cancelled, freeing the workflow's slot.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")


@dataclass
class _Wait(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


# Per event loop (a task belongs to one): key -> the wait in flight.
_waits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Wait[object]]] = (
    weakref.WeakKeyDictionary()
)


def in_flight() -> list[Hashable]:
    """The keys of the waits in flight on the running loop (for tests)."""
    return list(_waits.get(asyncio.get_running_loop(), {}))


async def shared(key: Hashable, ask: Callable[[], Awaitable[T]]) -> T:
    """What `ask()` returns, asked once for every caller awaiting `key` at the same time.

    A caller that is cancelled leaves the others waiting; the last one to leave
    cancels `ask()`. An error of `ask()` is raised to every caller."""
    table = _waits.setdefault(asyncio.get_running_loop(), {})
    wait = table.get(key)
    if wait is None:

        async def run() -> object:
            return await ask()

        wait = _Wait(asyncio.ensure_future(run()))
        table[key] = wait
        wait.task.add_done_callback(lambda _: _forget(table, key, wait))
    wait.waiters += 1
    try:
        return cast(T, await asyncio.shield(wait.task))
    finally:
        wait.waiters -= 1
        if wait.waiters == 0 and not wait.task.done():
            wait.task.cancel()
            _forget(table, key, wait)


def _forget(
    table: dict[Hashable, _Wait[object]], key: Hashable, wait: _Wait[object] | None
) -> None:
    if table.get(key) is wait:
        del table[key]
