"""Waiting for the next message: an idle session pauses its sandbox, then closes.

After `limits.pause_sandbox_after_seconds` without a message the sandbox is paused
(it stops costing; its next use resumes it), and after
`limits.close_after_idle_seconds` the session closes itself as `close` would.

One timer per idle period rather than one per turn: a timer cancelled by each message
costs two history events and a timer-queue write each turn, so a message leaves it
running, and when it fires early (the session was busy meanwhile) it is set again for
the rest of the period. Only a timer left running for a later deadline than the one
now wanted (an idle TTL's, when the sandbox must now be paused first) is cancelled:
once per idle period at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial

from temporalio import workflow


def _ready_or_done(ready: Callable[[], bool], timer: asyncio.Task[None]) -> bool:
    return ready() or timer.done()


class IdleTimer:
    def __init__(self) -> None:
        # The timer left running while turns come and go, and when it fires.
        self._timer: asyncio.Task[None] | None = None
        self._due: datetime | None = None

    async def wait(
        self,
        ready: Callable[[], bool],
        *,
        pause_after: float | None,
        close_after: float | None,
        pause: Callable[[], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        """Wait until `ready()`; `pause()` once `pause_after` seconds pass first (None:
        nothing to pause), and `close()` once `close_after` seconds do (None: never)."""
        since = workflow.now()
        if pause_after is not None and (close_after is None or pause_after < close_after):
            if not await self._until(since + timedelta(seconds=pause_after), ready):
                return
            await pause()
        if close_after is not None:
            if await self._until(since + timedelta(seconds=close_after), ready, closes=True):
                await close()
            return
        await workflow.wait_condition(ready)

    async def _until(
        self, deadline: datetime, ready: Callable[[], bool], *, closes: bool = False
    ) -> bool:
        """Wait until `ready()` or until `deadline`; True if the time ran out."""
        while not ready():
            timer = self._timer
            later = self._due is not None and self._due > deadline
            if timer is not None and not timer.done() and later:
                timer.cancel()
                timer = None
            if timer is None or timer.done():
                left = (deadline - workflow.now()).total_seconds()
                if left <= 0:
                    return True
                what = "close the session" if closes else "pause the sandbox"
                self._timer = asyncio.ensure_future(
                    workflow.sleep(left, summary=f"{what} if still idle")
                )
                self._due = deadline
            assert self._timer is not None
            await workflow.wait_condition(partial(_ready_or_done, ready, self._timer))
        return False
