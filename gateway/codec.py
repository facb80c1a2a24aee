"""The codec server: the Temporal UI's and CLI's remote codec endpoint, so that ops
read every message of a session, however long, in the UI (`sessionflow codec-server`).

Sessionflow encrypts nothing, but history holds references where an operator wants
the content (`storage.resolving`): large payloads in the payload store, and the
transcript's committed messages. The UI sends every payload it shows to
`POST <endpoint>/decode` as proto3 JSON (`{"payloads": [{"metadata": {"encoding":
"<base64>"}, "data": "<base64>"}]}`, the namespace in `X-Namespace`) and shows what
comes back; `/encode` (what the UI sends when an operator signals or starts a
workflow) returns payloads unchanged, since Sessionflow's own encoding is plain JSON.
Both are served under `/{namespace}/` too, for the CLI's `--codec-endpoint` template.

Auth: with `SESSIONFLOW_CODEC_TOKEN` set, every request needs `Authorization: Bearer
<token>` (the CLI's `--codec-auth`, or the UI's "pass access token" when the UI's
own token is that value; 401 otherwise). Without a token the server listens on a
loopback address only, like the dev server's UI. CORS lets the UI's origins
(`SESSIONFLOW_CODEC_CORS_ORIGINS`) call it from the browser, credentials included.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

# What decoding does to the payloads (`storage.resolving.PayloadResolver.decode`).
Decode = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]

# The most payloads one request may carry, and the largest body (bytes).
MAX_PAYLOADS = 1000
MAX_BODY_BYTES = 8 * 1024 * 1024


class _BearerToken:
    """Refuses every request but CORS preflights without `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                response = JSONResponse(
                    {"error": "unauthorized", "message": "a valid bearer token is required"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def create_codec_app(decode_payloads: Decode, *, token: str | None, origins: list[str]) -> FastAPI:
    app = FastAPI(
        title="Sessionflow codec server",
        description="The Temporal UI's remote codec endpoint: resolves payload and "
        "transcript references so ops read every message of a session.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def payloads_of(request: Request) -> list[Payload] | JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _refuse(413, "the request body is too large")
        try:
            raw = await request.json()
            items = raw["payloads"] if isinstance(raw, dict) else None
            if not isinstance(items, list) or len(items) > MAX_PAYLOADS:
                raise ValueError("payloads")
            return [json_format.ParseDict(item, Payload()) for item in items]
        except (ValueError, KeyError, TypeError, json_format.ParseError):
            return _refuse(400, 'the body must be {"payloads": [<Payload as proto3 JSON>, ...]}')

    def answer(payloads: list[Payload]) -> dict[str, Any]:
        return {"payloads": [json_format.MessageToDict(p) for p in payloads]}

    async def decode(request: Request) -> Any:
        payloads = await payloads_of(request)
        if isinstance(payloads, JSONResponse):
            return payloads
        return answer(await decode_payloads(payloads))

    async def encode(request: Request) -> Any:
        payloads = await payloads_of(request)
        if isinstance(payloads, JSONResponse):
            return payloads
        return answer(payloads)

    for prefix in ("", "/{namespace}"):
        app.add_api_route(prefix + "/decode", decode, methods=["POST"])
        app.add_api_route(prefix + "/encode", encode, methods=["POST"])

    if token:
        app.add_middleware(_BearerToken, token=token)
    # Outermost: preflights are answered before the token is asked for.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=True,
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["authorization", "content-type", "x-namespace"],
    )
    return app


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "message": message}, status_code=status)
