"""Heartbeating for long activities, in one small helper.

Heartbeats are how Temporal notices a dead worker (no heartbeat within the preset's
heartbeat timeout) and how a cancellation (an interrupt) reaches a running activity.
They run on a timer, independent of model output, so a model that thinks for a minute
before its first token is not mistaken for a dead worker.

A step that watches its session's interrupt notices (`streams.interrupts`) heartbeats
every `SLOW_INTERVAL`, and at once, then every `NOTICED_INTERVAL` for a while, when an
interrupt is announced; one that does not, or cannot read them, every
`HEARTBEAT_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

from sessionflow.streams.interrupts import FAST_WINDOW_SECONDS, InterruptWatch, Watched

# Steps that do not watch interrupt notices, or cannot read them: cancellations
# (interrupts) arrive on heartbeat responses, so this bounds how long one takes.
HEARTBEAT_INTERVAL = timedelta(milliseconds=400)
INTERVAL_SECONDS = HEARTBEAT_INTERVAL.total_seconds()
# After a notice, until the workflow's cancel comes back; also the worker's heartbeat
# throttle, which would otherwise hold these beats back.
NOTICED_INTERVAL = timedelta(milliseconds=100)
NOTICED_INTERVAL_SECONDS = NOTICED_INTERVAL.total_seconds()
# Between interrupts: how often a watching step tells Temporal it is alive.
SLOW_INTERVAL = timedelta(seconds=2)
# A heartbeat timeout shorter than this many slow intervals shortens the interval.
BEATS_PER_TIMEOUT = 2.5


@contextlib.asynccontextmanager
async def heartbeating(
    interrupts: InterruptWatch | None = None, workflow_id: str | None = None
) -> AsyncIterator[None]:
    """Heartbeat while the block runs; slowly when `interrupts` watches `workflow_id`."""
    async with contextlib.AsyncExitStack() as stack:
        watched = None
        if interrupts is not None and workflow_id is not None:
            watched = await stack.enter_async_context(interrupts.watching(workflow_id))
        task = asyncio.create_task(_beat(watched, _slow_seconds()))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _slow_seconds() -> float:
    timeout = activity.info().heartbeat_timeout
    slow = SLOW_INTERVAL.total_seconds()
    if timeout is not None:
        slow = min(slow, timeout.total_seconds() / BEATS_PER_TIMEOUT)
    return max(slow, INTERVAL_SECONDS)


async def _beat(watched: Watched | None, slow: float) -> None:
    loop = asyncio.get_running_loop()
    noticed_until = 0.0
    while True:
        activity.heartbeat()
        if watched is None:
            await asyncio.sleep(INTERVAL_SECONDS)
            continue
        if watched.moved.is_set():
            watched.moved.clear()
            noticed_until = loop.time() + FAST_WINDOW_SECONDS
        if loop.time() < noticed_until:
            wait = NOTICED_INTERVAL_SECONDS
        elif not watched.readable:
            wait = INTERVAL_SECONDS
        else:
            wait = slow
        # Not `asyncio.wait_for`: on 3.11 it drops a cancel that arrives just as the
        # event is set, and this task would outlive its step, heartbeating for good.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await watched.moved.wait()
