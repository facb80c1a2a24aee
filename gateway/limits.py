"""Request guards that run before any route: body size and read time, and UTF-8 ids.
(The caps on long-lived requests are in `sessionflow.gateway.slots`.)"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessionflow.gateway.problems import problem

# Bodies that carry no message (approvals, updates) are small; at most this many bytes
# (or `max_bytes`, if lower), so only the routes that take files take large bodies.
SMALL_BODY_BYTES = 256 * 1024


def carries_message(scope: Scope) -> bool:
    """Whether the request posts a message, which may hold files: `POST /api/chat` and
    `POST /v1/sessions/{id}/messages`."""
    path: str = scope["path"]
    return scope["method"] == "POST" and (
        path == "/api/chat" or (path.startswith("/v1/sessions/") and path.endswith("/messages"))
    )


class BodyLimit:
    """Answers 413 for bodies over the limit (declared or streamed) and 408 for a
    body that is not all there `timeout` seconds after the headers (a slow drip holds
    a connection and a task; there is no read timeout in uvicorn for it). The limit is
    `max_bytes` for requests that post a message (files make them large) and at most
    `SMALL_BODY_BYTES` for the others.

    A response sent before the body was read (an auth failure, say) closes the
    connection: the rest of the body would otherwise keep it busy for as long as the
    client cares to drip it."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if not carries_message(scope):
            limit = min(limit, SMALL_BODY_BYTES)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(_TooLarge(limit), scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        body_done = declared in (None, b"0") and b"transfer-encoding" not in headers
        seen = 0
        refused: _Refused | None = None
        started = False

        async def limited() -> Message:
            nonlocal seen, refused, body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = _TooSlow(self.timeout)
                raise refused from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = _TooLarge(limit)
                    raise refused
                body_done = not message.get("more_body", False)
            else:
                body_done = True  # the client went away
            return message

        async def guarded(message: Message) -> None:
            # FastAPI turns any error while reading a body into its own 400 ("There was
            # an error parsing the body"), so a refusal rarely gets back here: once the
            # body was refused, that answer is swallowed and replaced by ours.
            nonlocal started
            if refused is not None and not started:
                return
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    close = (b"connection", b"close")
                    message = {**message, "headers": [*message.get("headers", ()), close]}
            await send(message)

        with contextlib.suppress(_Refused):
            await self.app(scope, limited, guarded)
        if refused is not None and not started:
            await self._refuse(refused, scope, receive, send)

    @staticmethod
    async def _refuse(refused: _Refused, scope: Scope, receive: Receive, send: Send) -> None:
        # The body was not read to its end: the connection cannot carry another request.
        answer = problem(refused.status, refused.code, str(refused), {"connection": "close"})
        await answer(scope, receive, send)


class _Refused(Exception):
    status = 400
    code = "bad_request"


class _TooLarge(_Refused):
    status = 413
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit} bytes")


class _TooSlow(_Refused):
    status = 408
    code = "request_timeout"

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout:g} s")


class Utf8Only:
    """Answers 400 `invalid_id` for a path or query that is not UTF-8 once
    percent-decoded. The server decodes it with replacement characters (U+FFFD), so
    `s-%FF` and `s-%FE` would otherwise both be the session `s-\ufffd`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _utf8(scope):
            answer = problem(
                400,
                "invalid_id",
                "the request's path or query is not valid UTF-8 (percent-decoded): "
                "session ids, agent names and cursors are UTF-8 text",
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _utf8(scope: Scope) -> bool:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    try:
        for part in (raw_path, scope.get("query_string") or b""):
            unquote_to_bytes(part).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
