"""A cancel request from the Temporal UI ("Request Cancellation") or `temporal workflow
cancel` acts as an interrupt, and the session stays usable.

Temporal delivers a cancel request to a workflow by cancelling its main task. Left to
itself that cancellation landed wherever the run loop happened to wait: a model step's
activity was cancelled behind the turn's back, the step returned its partial answer as
a normal result, and the turn recorded it `finished` with no `abort` on the stream,
while the run showed "Cancel Request Sent" for good and ignored any later cancel (the
server records one cancel request per run).

So the run loop runs in a task of its own that the cancellation cannot reach
(`asyncio.shield`); the main task catches the cancellation and hands it to the session,
which interrupts the running turn exactly as the `interrupt` signal does (the stream
ends with `abort`, the turn records `interrupted`, queued messages still run) and then
continues as new, so the next cancel request reaches a fresh run. A cancel request
while no turn runs only starts that fresh run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


async def serve_through_cancels(
    serve: Coroutine[Any, Any, None], on_cancel: Callable[[], Awaitable[None]]
) -> None:
    """Run `serve` to its end (or its continue-as-new), calling `on_cancel` for each
    cancel request that reaches the workflow's main task meanwhile."""
    loop = asyncio.ensure_future(serve)
    while True:
        try:
            await asyncio.shield(loop)
            return
        except asyncio.CancelledError:
            # The loop itself cancelled: the worker is evicting the run from its cache
            # (it cancels every task), not a cancel request. Let that through.
            if loop.done() or loop.cancelling():
                raise
        await on_cancel()
