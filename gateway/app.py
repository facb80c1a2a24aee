"""Assembling the gateway: error answers, the body limit, and the routers.

The routes use only the client's public API (`sessionflow.client`), so anything the
gateway can do, a Python backend can do the same way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sessionflow.client import SessionClient
from sessionflow.gateway import chat, page, problems, schedules, sessions
from sessionflow.gateway.config import GatewayConfig
from sessionflow.gateway.limits import BodyLimit, Utf8Only
from sessionflow.gateway.problems import ErrorResponse
from sessionflow.gateway.slots import Slots

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 408, 409, 413, 416, 422, 429, 503)
}


def create_app(client: SessionClient, config: GatewayConfig) -> FastAPI:
    """The gateway over `client`. When the client knows agents (`agents=`), only those
    are served (others: 404); when it knows none, any agent name is passed on."""
    app = FastAPI(
        title="Sessionflow gateway",
        version="1",
        description="Durable agent sessions: send messages, approve tool calls, "
        "interrupt, read history and usage, and stream answers as AI SDK UI message "
        "streams over SSE.",
        responses=_ERRORS,
    )
    problems.install(app)
    # The last added runs first: BodyLimit sees every answer, so it can close a
    # connection whose body was left unread.
    app.add_middleware(Utf8Only)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout=config.body_timeout)
    app.state.client = client
    app.state.config = config
    app.state.slots = Slots(
        config.max_streams_per_tenant, config.long_requests, config.long_request_reserve
    )
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    app.include_router(page.router)
    app.include_router(sessions.router)
    app.include_router(schedules.router)
    app.include_router(chat.router)
    return app
