"""Every error the gateway answers is `{"error": {"code": ..., "message": ...}}`.

Sessionflow errors answer with the status and code their class declares; request
validation failures name the field; anything unexpected is logged and answered as a
500 without internals.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.alias_generators import to_snake
from starlette.exceptions import HTTPException as StarletteHTTPException

from sessionflow import errors
from sessionflow.validation import describe_errors, names_in

log = structlog.get_logger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Problem(Exception):
    """An error answer raised from inside a route."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


def problem(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.code, exc.message, exc.headers)  # type: ignore[no-any-return]

    @app.exception_handler(errors.SessionflowError)
    async def _sessionflow(_: Request, exc: errors.SessionflowError) -> JSONResponse:
        # The error tree carries each kind's status and code (sessionflow.errors), and
        # those that say when to try again (`retry_after`, s) are sent as Retry-After.
        wait = getattr(exc, "retry_after", None)
        headers = {"retry-after": str(max(1, math.ceil(wait)))} if wait is not None else None
        return problem(exc.http_status, exc.code, str(exc), headers)  # type: ignore[no-any-return]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return problem(400, "malformed_json", "the request body is not valid JSON")  # type: ignore[no-any-return]
        # Field paths name only what the API declares and never quote the input: an
        # unknown field's name or a message quoting a value may be a secret.
        detail = describe_errors(problems, _declared_names(request.app))
        return problem(422, "invalid_request", detail)  # type: ignore[no-any-return]

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers a JSON body that is not UTF-8 with its own generic 400
            # (code "http_error"); it is malformed JSON like any other.
            return problem(400, "malformed_json", "the request body is not valid JSON (UTF-8)")  # type: ignore[no-any-return]
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))  # type: ignore[no-any-return]

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("gateway request failed", path=request.url.path)
        return problem(500, "internal", "internal error; see the gateway's logs")  # type: ignore[no-any-return]


def _declared_names(app: FastAPI) -> frozenset[str]:
    """The names the API declares: body fields (every model's, from the OpenAPI
    description, in both spellings), parameters, and where a value comes from (`body`,
    `query`, ...)."""
    cached: frozenset[str] | None = getattr(app.state, "declared_names", None)
    if cached is not None:
        return cached
    names = {"body", "query", "path", "header", "cookie"} | names_in(app.openapi(), parameters=True)
    # Bodies are described in camelCase but still accept snake_case, which an error's
    # path then names (`sandbox_id`): those spellings are declared as well.
    names |= {to_snake(name) for name in names}
    app.state.declared_names = frozenset(names)
    return app.state.declared_names  # type: ignore[no-any-return]
