"""The gateway's routes: sessions over REST and SSE, and the AI SDK chat transport.

Every route needs `Authorization: Bearer <api key>`; the key's tenant scopes every
session id (the session `chat-1` of tenant `acme` is the Sessionflow session
`acme:chat-1`), so one tenant can neither read nor write another's sessions.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from sessionflow.client.client import SessionClient
from sessionflow.client.inputs import parse_send_input
from sessionflow.client.listing import list_sessions
from sessionflow.client.session import Session
from sessionflow.contract import ApprovalResponse, UsageReport
from sessionflow.errors import InvalidInput, SessionNotFound
from sessionflow.gateway import problems
from sessionflow.gateway.config import GatewayConfig
from sessionflow.gateway.limits import BodyLimit
from sessionflow.gateway.models import (
    ApprovalBody,
    ChatRequest,
    HistoryResponse,
    SendBody,
    SendResponse,
    UpdateBody,
)
from sessionflow.gateway.problems import ErrorResponse, Problem
from sessionflow.gateway.sse import sse_response
from sessionflow.messages import Role
from sessionflow.streams.reader import is_entry_id

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422, 503)
}
STATIC = Path(__file__).with_name("static")
_bearer = HTTPBearer(auto_error=False, description="An API key from SESSIONFLOW_API_KEYS")


async def _tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant owning the request's API key; 401 without a valid key."""
    config: GatewayConfig = request.app.state.config
    if credentials is not None:
        for key, owner in config.api_keys.items():
            if secrets.compare_digest(key.encode(), credentials.credentials.encode()):
                return owner
    raise Problem(401, "unauthorized", "send 'Authorization: Bearer <api key>'")


Tenant = Annotated[str, Depends(_tenant)]
Agent = Annotated[
    str | None, Query(description="The session's agent; default from the gateway config.")
]


def create_app(client: SessionClient, config: GatewayConfig) -> FastAPI:
    app = FastAPI(
        title="Sessionflow gateway",
        version="1",
        description="Durable agent sessions: send messages, approve tool calls, "
        "interrupt, read history and usage, and stream answers as AI SDK UI message "
        "streams over SSE.",
        responses=_ERRORS,
    )
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.state.config = config

    def session_for(owner: str, session_id: str, agent: str | None) -> Session:
        if not session_id:
            # `{owner}:` alone would pass as an id: an /api/chat body with `"id": ""`
            # started a session that no /v1/sessions/{id} route can address.
            raise InvalidInput("session id is empty")
        return client.session(f"{owner}:{session_id}", agent=agent or config.default_agent)

    async def existing(owner: str, session_id: str, agent: str | None) -> Session:
        session = session_for(owner, session_id, agent)
        if not await session.exists():
            raise SessionNotFound(f"no session {session_id!r}")
        return session

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The web page (it asks for an API key and keeps it in local storage)."""
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/sessions")
    async def sessions(owner: Tenant, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Any:
        """The tenant's running sessions, most recently active first, with a Temporal UI link."""
        prefix = f"{owner}:"
        rows = await list_sessions(client.temporal, limit=500)
        mine = [r for r in rows if r.session_id.startswith(prefix)][:limit]
        base = f"{config.temporal_ui_url}/namespaces/{quote(config.namespace)}/workflows"
        return {
            "sessions": [
                {
                    "session_id": r.session_id.removeprefix(prefix),
                    "agent": r.agent,
                    "status": r.status,
                    "tokens": r.tokens,
                    "pending_approvals": r.pending_approvals,
                    "last_activity": r.last_activity.isoformat() if r.last_activity else None,
                    "ui_url": f"{base}/{quote(r.workflow_id, safe='')}",
                }
                for r in mine
            ]
        }

    @app.post("/v1/sessions/{session_id}/messages", status_code=202)
    async def send_message(
        session_id: str, body: SendBody, owner: Tenant, agent: Agent = None
    ) -> SendResponse:
        """Send a message (the first one starts the session); returns the answer's id."""
        result = await session_for(owner, session_id, agent).send(
            body.message,
            interrupt_if_streaming=body.interrupt_if_streaming,
            context=body.context,
            sandbox_id=body.sandbox_id,
        )
        return SendResponse(assistant_message_id=result.assistant_message_id)

    @app.post("/v1/sessions/{session_id}/approvals")
    async def approve(
        session_id: str, body: ApprovalBody, owner: Tenant, agent: Agent = None
    ) -> SendResponse:
        """Answer a pending tool approval."""
        session = await existing(owner, session_id, agent)
        result = await session.approve(ApprovalResponse(**body.model_dump()))
        return SendResponse(assistant_message_id=result.assistant_message_id)

    @app.post("/v1/sessions/{session_id}/interrupt", status_code=202)
    async def interrupt(session_id: str, owner: Tenant, agent: Agent = None) -> dict[str, bool]:
        """Stop the running turn; its partial answer is kept."""
        await (await existing(owner, session_id, agent)).interrupt()
        return {"interrupted": True}

    @app.get("/v1/sessions/{session_id}/history")
    async def history(
        session_id: str,
        owner: Tenant,
        agent: Agent = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    ) -> HistoryResponse:
        """The session's messages with their parts, oldest first, one page at a time."""
        session = await existing(owner, session_id, agent)
        messages = await session.history(offset=offset, limit=limit)
        return HistoryResponse(
            messages=[m.model_dump(mode="json") for m in messages],
            offset=offset,
            count=len(messages),
        )

    @app.get("/v1/sessions/{session_id}/usage")
    async def usage(session_id: str, owner: Tenant, agent: Agent = None) -> UsageReport:
        """Token use per step, in total and by model."""
        return await (await existing(owner, session_id, agent)).usage()

    @app.patch("/v1/sessions/{session_id}")
    async def update(
        session_id: str, body: UpdateBody, owner: Tenant, agent: Agent = None
    ) -> dict[str, bool]:
        """Switch the session's sandbox and/or rewind it to `last_message_id`."""
        session = await existing(owner, session_id, agent)
        await session.update(sandbox_id=body.sandbox_id, last_message_id=body.last_message_id)
        return {"updated": True}

    @app.get(
        "/v1/sessions/{session_id}/stream",
        response_class=Response,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        session_id: str,
        owner: Tenant,
        agent: Agent = None,
        after: Annotated[str | None, Query(description="Resume after this event id")] = None,
        follow: bool = False,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The session's chunks as SSE: from `Last-Event-ID`/`after`, else from the start
        of the newest answer; ends after it unless `follow`."""
        session = await existing(owner, session_id, agent)
        cursor = last_event_id or after
        if cursor is not None and not is_entry_id(cursor):
            raise InvalidInput(f"{cursor!r} is not an event id")
        return sse_response(session.stream(after=cursor, follow=follow), config.heartbeat_seconds)

    @app.post("/api/chat", response_class=Response)
    async def chat(body: ChatRequest, owner: Tenant, agent: Agent = None) -> Response:
        """The AI SDK's DefaultChatTransport: send the newest user message, stream the answer."""
        session = session_for(owner, body.id, agent)
        message = dict(body.messages[-1])
        if message.get("role") != Role.USER.value:
            raise InvalidInput("the last message must have role 'user'")
        # Validate before a regenerate rewinds: a malformed message must be refused
        # with the session as it was, not after its last answer has been dropped.
        parse_send_input(message)
        if body.trigger == "regenerate-message":
            await _rewind_before(session, str(message.get("id", "")))
        result = await session.send(message)
        return sse_response(result.stream(), config.heartbeat_seconds)

    @app.get("/api/chat/{chat_id}/stream", response_class=Response)
    async def resume(chat_id: str, owner: Tenant, agent: Agent = None) -> Response:
        """Resume the answer being streamed, or 204 when none is."""
        session = session_for(owner, chat_id, agent)
        if not await client.reader.is_active(session.workflow_id):
            return Response(status_code=204)
        return sse_response(session.stream(), config.heartbeat_seconds)

    return app


async def _rewind_before(session: Session, message_id: str) -> None:
    """Drop the message being regenerated's previous answer, and the message itself
    (it is sent again)."""
    history = await session.history()
    index = next((i for i, m in enumerate(history) if m.id == message_id), None)
    if index is None:
        return
    if index == 0:
        raise InvalidInput("cannot regenerate the answer to the session's first message")
    await session.update(last_message_id=history[index - 1].id)
