"""One open MCP client session per server per worker, shared by every call to it.

Opening a session costs a process start and an import for a stdio server (most of a
second for a Python one) and a handshake for an HTTP one, so a worker keeps each
server's session open and shares it between concurrent listings and tool calls
(JSON-RPC matches answers to requests). The SDK's client lives in anyio task groups
that one task must enter and leave, so each session is held open by a background task
of its own and callers borrow it. A session that fails is dropped and the next use
opens a new one; one idle for `IDLE_SECONDS` is closed.

Failures leave as `sessionflow.errors`: `MCPServerUnavailable` (retried: the server is
down, restarting, or dropped the connection) or `MCPServerRefused` (not retried: its
command does not start, its URL or credentials are wrong, its answer is malformed).
An error the server returns for a call is the model's to read: `MCPToolError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from sessionflow.agents.mcp import MCPServer, MCPServerHTTP, MCPServerStdio
from sessionflow.errors import MCPServerRefused, MCPServerUnavailable, SessionflowError

if TYPE_CHECKING:
    from mcp import Client
    from mcp.shared.dispatcher import ProgressFnT
    from mcp.types import CallToolResult, Tool

log = structlog.get_logger(__name__)

# An unused session is closed after this long (its stdio process ends with it).
IDLE_SECONDS = 300.0
# Pages of a tool listing read at most, so a server that never stops paging cannot
# hold a step forever.
MAX_LIST_PAGES = 100
# HTTP statuses that mean the request itself is refused, not that the server is down.
_REFUSING_STATUSES = {401, 403}

T = TypeVar("T")


class MCPToolError(Exception):
    """The server answered a call with an error (`isError`, or a JSON-RPC error such as
    invalid params): a tool error the model reads, not a failure to retry."""


class _Connection:
    """One server's session, held open by a background task until closed."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[Client] = self.loop.create_future()
        # Whoever opened it may have been cancelled while waiting: mark the outcome
        # seen, so a failure nobody awaits is not reported as lost.
        self.opened.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed = False
        self.users = 0
        # The last HTTP status that refused a request (401, 403), to tell bad
        # credentials from a server that is down: the SDK reports both as one error.
        self.refused_status: int | None = None
        self._stop = asyncio.Event()
        self._idle: asyncio.TimerHandle | None = None
        # A fresh context: the holder outlives the activity that opened it, and must
        # not log under that activity's bound ids.
        self.task = self.loop.create_task(
            self._hold(), name=f"mcp-server:{server.name}", context=contextvars.Context()
        )

    async def _hold(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(self._client(stack))
                self.opened.set_result(client)
                log.info("MCP server connected", mcp_server=self.server.name)
                await self._stop.wait()
        except asyncio.CancelledError:
            if not self.opened.done():
                self.opened.set_exception(MCPServerUnavailable("the connection was closed"))
            raise
        except Exception as err:
            if not self.opened.done():
                self.opened.set_exception(err)
            else:
                log.info(
                    "MCP server connection lost", mcp_server=self.server.name, error=_describe(err)
                )
        finally:
            self.closed = True

    def _client(self, stack: AsyncExitStack) -> Client:
        from mcp import Client, StdioServerParameters

        server = self.server
        if isinstance(server, MCPServerStdio):
            params = StdioServerParameters(
                command=server.command,
                args=list(server.args),
                env=dict(server.env) if server.env is not None else None,
                cwd=server.cwd,
            )
            return Client(params, cache=None)
        if isinstance(server, MCPServerHTTP):
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            async def note_refusal(response: httpx2.Response) -> None:
                if response.status_code in _REFUSING_STATUSES:
                    self.refused_status = response.status_code

            http = httpx2.AsyncClient(
                headers=dict(server.headers),
                # As the SDK's own default: long reads, for streamed answers.
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [note_refusal]},
            )
            stack.push_async_callback(http.aclose)
            return Client(streamable_http_client(server.url, http_client=http), cache=None)
        raise TypeError(f"unknown kind of MCP server: {type(server).__name__}")

    def borrow(self) -> None:
        self.users += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def give_back(self) -> None:
        self.users -= 1
        if self.users == 0 and not self.closed:
            self._idle = self.loop.call_later(IDLE_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.users == 0:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.opened.done():
            self._stop.set()
        else:
            self.task.cancel()


_connections: weakref.WeakKeyDictionary[MCPServer, _Connection] = weakref.WeakKeyDictionary()


def _connection(server: MCPServer) -> _Connection:
    current = _connections.get(server)
    if current is None or current.closed or current.loop is not asyncio.get_running_loop():
        current = _Connection(server)
        _connections[server] = current
    return current


async def _use(
    server: MCPServer,
    during: str,
    work: Callable[[Client], Awaitable[T]],
    *,
    again_if_stale: bool = False,
) -> T:
    """Run `work` on the server's session (opening one if needed); a session that
    fails is dropped, and the failure leaves as a `sessionflow.errors` type.

    With `again_if_stale` (for requests that are safe to repeat), a session opened
    before this use that turns out to be lost (a stdio process that died while idle,
    an HTTP server that restarted) is replaced and `work` tried once more at once,
    rather than failing the whole activity attempt."""
    conn = _connection(server)
    reused = conn.opened.done()
    try:
        return await _on(conn, during, work)
    except MCPServerUnavailable:
        if not (again_if_stale and reused):
            raise
        log.info("MCP server session was stale; reconnecting", mcp_server=server.name)
        return await _on(_connection(server), during, work)


async def _on(conn: _Connection, during: str, work: Callable[[Client], Awaitable[T]]) -> T:
    server = conn.server
    conn.borrow()
    try:
        try:
            client = await asyncio.wait_for(asyncio.shield(conn.opened), server.connect_timeout)
        except TimeoutError:
            conn.close()
            raise MCPServerUnavailable(
                f"MCP server {server.name!r} did not connect within {server.connect_timeout:g}s"
            ) from None
        except Exception as err:
            conn.close()
            raise _translate(err, conn, "connecting") from err
        try:
            return await work(client)
        except Exception as err:
            error = _translate(err, conn, during)
            if not isinstance(error, MCPToolError):
                conn.close()
            raise error from err
    finally:
        conn.give_back()


async def list_tools(server: MCPServer) -> list[Tool]:
    """Every tool the server offers, read page by page."""

    async def listing(client: Client) -> list[Tool]:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await asyncio.wait_for(client.list_tools(cursor=cursor), server.connect_timeout)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    return await _use(server, "listing tools", listing, again_if_stale=True)


async def call_tool(
    server: MCPServer, name: str, arguments: dict[str, Any], progress: ProgressFnT | None = None
) -> CallToolResult:
    """Call the server's tool `name` (as the server names it)."""

    async def calling(client: Client) -> CallToolResult:
        return await client.call_tool(
            name,
            arguments,
            read_timeout_seconds=server.call_timeout,
            progress_callback=progress,
        )

    return await _use(server, f"calling {name!r}", calling)


async def close_mcp_connections() -> None:
    """Close every MCP session this event loop holds (their stdio processes end).
    Sessions also close after `IDLE_SECONDS` unused and when the loop ends; call this
    to end them at once, e.g. when a worker or a test stops."""
    loop = asyncio.get_running_loop()
    held = [c for c in list(_connections.values()) if c.loop is loop]
    for conn in held:
        conn.close()
    if held:
        await asyncio.wait([c.task for c in held], timeout=10)


def _translate(
    err: BaseException, conn: _Connection, during: str
) -> SessionflowError | MCPToolError:
    """What a failure means for the step or call: retry it, tell the model, or give up."""
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, REQUEST_TIMEOUT
    from pydantic import ValidationError

    server = conn.server
    stdio = isinstance(server, MCPServerStdio)
    err = _leaf(err)
    where = f"MCP server {server.name!r} ({during})"
    if isinstance(err, SessionflowError | MCPToolError):
        return err
    if conn.refused_status is not None:
        return MCPServerRefused(
            f"{where}: the server answered HTTP {conn.refused_status}; check its headers"
        )
    if isinstance(err, FileNotFoundError | PermissionError) and isinstance(server, MCPServerStdio):
        return MCPServerRefused(f"{where}: cannot start {server.command!r}: {err}")
    if isinstance(err, MCPError):
        lost = err.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT, INTERNAL_ERROR) or (
            # An HTTP server that restarted no longer knows our session: open a new one.
            err.code == INVALID_REQUEST and "session terminated" in err.message.lower()
        )
        if err.code == CONNECTION_CLOSED and during == "connecting" and stdio:
            return MCPServerRefused(
                f"{where}: the process exited before it answered (its stderr is in the "
                f"worker's log): {err.message}"
            )
        if lost:
            return MCPServerUnavailable(f"{where}: {err.message}")
        if during.startswith("calling"):
            return MCPToolError(err.message)
        return MCPServerRefused(f"{where}: {err.message} (error {err.code})")
    if isinstance(err, ValidationError):
        return MCPServerRefused(f"{where}: the server's answer is malformed: {err}")
    return MCPServerUnavailable(f"{where}: {_describe(err)}")


def _leaf(err: BaseException) -> BaseException:
    """The first real error inside the exception groups anyio's task groups raise."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        inner = [e for e in err.exceptions if not isinstance(e, asyncio.CancelledError)]
        err = (inner or list(err.exceptions))[0]
    return err


def _describe(err: BaseException) -> str:
    err = _leaf(err)
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
