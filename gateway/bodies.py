"""JSON request bodies, held to the nesting rule of `sessionflow.json_limits` before
FastAPI turns them into models.

FastAPI parses a body with `json.loads`, which nests as deep as Python's recursion
limit allows (about 1000 levels); deeper, it fails with a generic 400. Bodies it did
parse were handed on whole: a message's metadata 198 levels deep was accepted (202)
and then wedged the session, since Temporal's decoder stops at 200. So every route of
the API parses its body here first: nested past `MAX_JSON_DEPTH` plus the body's own
wrapping (`BODY_ENVELOPE_DEPTH`), or past what the parser can nest at all, is a 422
`json_too_deep` naming the limit; anything within it goes on, parsed once, to FastAPI
and then to the client, whose own check names the field that is too deep.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from sessionflow.errors import JsonTooDeep
from sessionflow.json_limits import BODY_ENVELOPE_DEPTH, MAX_JSON_DEPTH, deeper_than

MAX_BODY_DEPTH = MAX_JSON_DEPTH + BODY_ENVELOPE_DEPTH

_TOO_DEEP = (
    f"the request body is nested more than {MAX_BODY_DEPTH} levels deep; values in it "
    f"(a message, its metadata and data parts, context) may nest at most {MAX_JSON_DEPTH} "
    "levels of objects and arrays"
)


class DepthCheckedRequest(Request):
    """A request whose `json()` refuses bodies nested too deep (`JsonTooDeep`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                parsed = json.loads(body)
            except RecursionError:
                raise JsonTooDeep(_TOO_DEEP) from None
            if deeper_than(parsed, MAX_BODY_DEPTH):
                raise JsonTooDeep(_TOO_DEEP)
            self._json = parsed
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is parsed, and its depth checked, before FastAPI reads it.

    The parse happens outside FastAPI's request handling on purpose: there any error
    while reading a body becomes its own generic 400. Malformed JSON is left for FastAPI
    to report as it always has (400 `malformed_json`); the parsed body is cached on the
    request, so it is parsed only once."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            request = DepthCheckedRequest(request.scope, request.receive)
            if self.body_field is not None and _is_json(request):
                try:
                    await request.json()
                except ValueError as err:  # malformed (or not UTF-8): FastAPI says so
                    if isinstance(err, JsonTooDeep):
                        raise
            return await handler(request)

        return checked


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("", "application/json") or kind.endswith("+json")
