"""A streamable-HTTP MCP server for the tests: the SDK's own `MCPServer` (FastMCP)
served by uvicorn on a loopback port, in the test's event loop.

It can stop and start again on the same port, as a redeployed server would, and it
records what reached it: tool calls, listings, and the API key of each request.
Requests without `x-api-key: <API_KEY>` get 401, as an authenticated server's would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import Tool
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sessionflow.cli.localstack import free_port

API_KEY = "k-test-123"


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Ctrl-C belongs to pytest, not to this server.
        yield


class HttpMCP:
    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self.listings = 0
        self.keys_seen: set[str] = set()
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _app(self) -> ASGIApp:
        outer = self

        class Counting(MCPServer):
            async def list_tools(self) -> list[Tool]:
                outer.listings += 1
                return await super().list_tools()

        mcp = Counting("kb", log_level="WARNING")

        @mcp.tool()
        def lookup(key: str) -> dict[str, str]:
            """Look a key up in the knowledge base."""
            outer.calls.append({"key": key})
            return {"key": key, "value": f"value of {key}"}

        # A fresh app per start: the SDK's session manager runs once per instance.
        inner = mcp.streamable_http_app()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                key = dict(scope["headers"]).get(b"x-api-key", b"").decode()
                outer.keys_seen.add(key)
                if key != API_KEY:
                    await PlainTextResponse("unknown key", status_code=401)(scope, receive, send)
                    return
            await inner(scope, receive, send)

        return app

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None
