"""Server-sent events in the AI SDK's UI message stream framing.

Each chunk is `id: <Redis entry id>` plus `data: <json>`; a comment line keeps idle
connections alive; `data: [DONE]` ends the stream. The reader runs in its own task
feeding a queue, so a heartbeat never has to cancel a pending Redis read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sessionflow.client import StreamEvent
from sessionflow.gateway.slots import Slot

HEADERS = {
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}

_END = object()


def encode(event: StreamEvent) -> str:
    return f"id: {event.id}\ndata: {event.chunk.to_json()}\n\n"


async def frames(events: AsyncIterator[StreamEvent], heartbeat: float) -> AsyncIterator[str]:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        finally:
            await queue.put(_END)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            # Whatever else has queued goes out in the same write.
            batch: list[str] = []
            while item is not _END:
                assert isinstance(item, StreamEvent)
                batch.append(encode(item))
                if queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                yield "".join(batch)
            if item is _END:
                break
        await asyncio.wait([task])
        if task.exception() is None:
            yield "data: [DONE]\n\n"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class _SlotResponse(StreamingResponse):
    """A stream that gives its tenant's slot back however it ends: after `[DONE]`,
    on an error, or when the client goes away (Starlette then stops the response)."""

    def __init__(self, content: AsyncIterator[str], slot: Slot | None) -> None:
        super().__init__(content, media_type="text/event-stream", headers=HEADERS)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.slot is not None:
                self.slot.release()


def sse_response(
    events: AsyncIterator[StreamEvent], heartbeat: float, slot: Slot | None = None
) -> StreamingResponse:
    """The SSE answer; `slot` (the tenant's stream slot) is released when it ends."""
    return _SlotResponse(frames(events, heartbeat), slot)
