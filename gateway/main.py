"""Serving the gateway with uvicorn inside our own event loop and shutdown signal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import structlog
import uvicorn
from fastapi import FastAPI

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process's own handlers (stop_on_signals) decide when to stop.
        yield


async def serve_gateway(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (`started` is set once listening); in-flight streams
    are closed on the way out."""
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="off", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    # uvicorn exposes readiness only as a flag, so it is polled.
    while started is not None and not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    if started is not None:
        started.set()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    # Open SSE streams would hold a graceful shutdown; they can reconnect elsewhere.
    server.force_exit = True
    stopping.cancel()
    await serving
    log.info("gateway stopped")
