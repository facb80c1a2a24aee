"""Heartbeating for long activities, in one small helper.

Heartbeats are how Temporal notices a dead worker (no heartbeat within the
preset's heartbeat timeout) and how a cancellation (an interrupt) reaches a running
activity. They run on a timer, independent of model output, so a model that thinks
for a minute before its first token is not mistaken for a dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

# Also the worker's heartbeat throttle: cancellations (interrupts) arrive on heartbeat
# responses, so this bounds how long an interrupt takes to reach an activity.
HEARTBEAT_INTERVAL = timedelta(milliseconds=400)
INTERVAL_SECONDS = HEARTBEAT_INTERVAL.total_seconds()


@contextlib.asynccontextmanager
async def heartbeating(interval: float = INTERVAL_SECONDS) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
