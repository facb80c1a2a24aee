"""How the client paces a call it asks again: exponential backoff with jitter.

A fixed 0.2 s pause, repeated without end, turned a session that could never answer
into five updates a second for ever, and a run continuing as new that answered at
once into a history growing by hundreds of events a second. So every loop that asks
again pauses through a `Backoff`: the pause doubles from `FIRST_PAUSE` to `LAST_PAUSE`,
and each is jittered (half fixed, half random) so that many waiters on one session
do not ask in step.
"""

from __future__ import annotations

import asyncio
import random
import time

FIRST_PAUSE = 0.1
LAST_PAUSE = 2.0


class Backoff:
    """The pauses of one loop: `await backoff.pause()` before each new attempt."""

    def __init__(
        self,
        *,
        first: float = FIRST_PAUSE,
        last: float = LAST_PAUSE,
        rng: random.Random | None = None,
    ) -> None:
        self.first = first
        self.last = last
        self._rng = rng or random.Random()
        self._next = first

    def next_delay(self) -> float:
        """The next pause (s), between half of and the whole current step, and step on."""
        step = self._next
        self._next = min(step * 2, self.last)
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        """Start again from the shortest pause (the last attempt got somewhere)."""
        self._next = self.first

    async def pause(self, *, attempt_started: float | None = None) -> None:
        """Sleep before the next attempt.

        An attempt that itself lasted longer than the longest pause (`attempt_started`,
        from `time.monotonic()`) already paced the loop: a long poll that ran out is
        asked again after the shortest pause, not after a grown one that would delay
        an answer arriving just then.
        """
        if attempt_started is not None and time.monotonic() - attempt_started >= self.last:
            self.reset()
        await asyncio.sleep(self.next_delay())
