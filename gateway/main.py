"""Serving the gateway with uvicorn inside our own event loop and shutdown signal, with
the connection limits and read timeouts uvicorn does not have by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Generator
from http import HTTPStatus
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sessionflow.gateway.config import GatewayConfig
from sessionflow.gateway.problems import problem

log = structlog.get_logger(__name__)

# Request line and headers of one request, at most (h11's own limit is 16 KiB;
# httptools has none: 20 MB of one header were read into memory).
MAX_HEADER_BYTES = 64 * 1024
# What a client refused for too many connections is told to wait (s).
BUSY_RETRY_AFTER = 1


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process's own handlers (stop_on_signals) decide when to stop.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's, with a failure to listen raised as `OSError` in the serving task.
        uvicorn exits instead (`sys.exit`), and a SystemExit from a task ends the event
        loop and the process: a codec server whose port was taken after `dev` checked
        it stopped all of `dev`, blaming the gateway."""
        heard = _LastError()
        logging.getLogger("uvicorn.error").addHandler(heard)
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            raise OSError(
                f"cannot listen on {self.config.host}:{self.config.port}: "
                f"{heard.message or 'uvicorn could not start'}"
            ) from None
        finally:
            logging.getLogger("uvicorn.error").removeHandler(heard)


class _LastError(logging.Handler):
    """The last error uvicorn logged (why it could not listen: it says so only there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = " ".join(record.getMessage().split())


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer past the connection limit (uvicorn's own is plain text)."""
    answer = problem(
        503,
        "server_busy",
        "the gateway is serving as many connections as it may; try again shortly",
        {"retry-after": str(BUSY_RETRY_AFTER), "connection": "close"},
    )
    await answer(scope, receive, send)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with what it lacks against slow or huge requests.

    - A request's headers must be complete `header_timeout` seconds after its first
      byte, or after the connection opened: else 408 and the connection is closed.
      uvicorn times out only idle keep-alive connections, so half a header (or
      nothing at all) held a connection, and a place under the limit, forever.
    - At most about `MAX_HEADER_BYTES` of request line and headers (431 past it).
    - Past the connection limit (`limit_concurrency`), our JSON 503 answers.
    """

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        # Bytes received while waiting for, or reading, a request's headers.
        self._header_bytes = 0
        self._in_headers = False
        self._between_requests = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers or self._between_requests:
            self._header_bytes += len(data)
        super().data_received(data)
        waiting = self._in_headers or self._between_requests
        if waiting and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, "request_headers_too_large", "the request's headers are too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._between_requests = False
        self._in_headers = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._in_headers = False
        self._header_bytes = 0
        limit = self.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        # uvicorn would run its plain-text 503 app; run ours instead.
        app = self.app
        self.app, self.limit_concurrency = _busy, None
        try:
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._between_requests = True
        self._header_bytes = 0

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        self._refuse(
            408,
            "request_timeout",
            f"the request's headers did not arrive within {self.header_timeout:g} s",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer without the app and close (the request never reached it)."""
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self.transport.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body)}\r\n"
                "connection: close\r\n\r\n".encode()
                + body
            )
        # else a response is under way: no answer can be put in the middle of it.
        self.transport.close()


def _protocol(config: GatewayConfig) -> type[GuardedHttpProtocol]:
    class Protocol(GuardedHttpProtocol):
        header_timeout = config.header_timeout

    return Protocol


async def serve_gateway(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (`started` is set once listening); in-flight streams
    are closed on the way out. Limits and timeouts come from the app's `GatewayConfig`
    (`app.state.config`; the defaults without one)."""
    config: GatewayConfig = getattr(app.state, "config", None) or GatewayConfig()
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="off",
            access_log=False,
            http=_protocol(config),
            ws="none",
            # uvicorn refuses once `connections >= limit_concurrency`: +1 lets exactly
            # `max_connections` be served.
            limit_concurrency=config.max_connections + 1,
            timeout_keep_alive=config.keep_alive_timeout,  # type: ignore[arg-type]
        )
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
