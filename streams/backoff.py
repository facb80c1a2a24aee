"""Retry delays while Redis is unreachable, shared by stream writers and readers.

Both retry often at first (a restart takes well under a second) and settle at one
try a second, so a long outage costs Redis nothing when it comes back.
"""

from __future__ import annotations

import asyncio


class Backoff:
    """Doubling delays from `first` to `cap` seconds; `reset` after a success."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        self._first = first
        self._cap = cap
        self._delay = first

    def reset(self) -> None:
        self._delay = self._first

    async def wait(self) -> None:
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._cap)
