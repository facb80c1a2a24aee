"""Serving an ASGI app (a gateway, a codec server, a fake provider API) on a free
loopback port for the length of a test, through the gateway's own server loop, so
every test serves the way production does and stops it the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sessionflow.cli.localstack import free_port
from sessionflow.gateway.main import serve_gateway


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` while the block runs; yields its base URL."""
    port = free_port()
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_gateway(app, "127.0.0.1", port, stop, started))
    try:
        await started.wait()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await task
