"""`/v1/sessions`: the REST API over sessions, and their streams as SSE."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Query, Response

from sessionflow.contract import ApprovalResponse
from sessionflow.gateway.bodies import JsonBodyRoute
from sessionflow.gateway.models import (
    ApprovalBody,
    ForkBody,
    ForkResponse,
    HistoryResponse,
    InfoResponse,
    OutcomeResponse,
    SendBody,
    SendResponse,
    SessionRow,
    SessionsResponse,
    UpdateBody,
    UsageResponse,
)
from sessionflow.gateway.sse import sse_response
from sessionflow.gateway.tenancy import (
    Client,
    Config,
    ExistingSession,
    NamedSession,
    Slots,
    Tenant,
)
from sessionflow.ids import tenant_session_id
from sessionflow.ui_messages import to_ui_messages

router = APIRouter(prefix="/v1/sessions", route_class=JsonBodyRoute)

# The longest `?wait=` of an outcome long-poll (s), and the least a look takes.
MAX_OUTCOME_WAIT = 60.0
MIN_OUTCOME_LOOK = 1.0


@router.get("")
async def sessions(
    owner: Tenant,
    client: Client,
    config: Config,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SessionsResponse:
    """The tenant's running sessions, most recently active first, with a Temporal UI link."""
    prefix = f"{owner}:"
    rows = await client.list_sessions(prefix=prefix, limit=limit)
    base = f"{config.temporal_ui_url}/namespaces/{quote(config.namespace)}/workflows"
    return SessionsResponse(
        sessions=[
            SessionRow(
                session_id=r.session_id.removeprefix(prefix),
                agent=r.agent,
                status=r.status,
                tokens=r.tokens,
                pending_approvals=r.pending_approvals,
                last_activity=r.last_activity.isoformat() if r.last_activity else None,
                ui_url=f"{base}/{quote(r.workflow_id, safe='')}",
            )
            for r in rows
        ]
    )


@router.post("/{session_id}/messages", status_code=202)
async def send_message(session: NamedSession, body: SendBody) -> SendResponse:
    """Send a message (the first one starts the session); returns the answer's id."""
    result = await session.send(
        body.message,
        interrupt_if_streaming=body.interrupt_if_streaming,
        context=body.context,
        sandbox_id=body.sandbox_id,
        budget=body.budget.model_dump(by_alias=False) if body.budget else None,
        if_busy=body.if_busy,
        webhook_url=body.webhook_url,
    )
    return SendResponse(assistant_message_id=result.assistant_message_id)


@router.get(
    "/{session_id}/messages/{message_id}/outcome",
    responses={202: {"model": OutcomeResponse, "description": "Not ended yet"}},
)
async def outcome(
    session: ExistingSession,
    owner: Tenant,
    slots: Slots,
    response: Response,
    message_id: Annotated[str, Path(min_length=1, max_length=200)],
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_OUTCOME_WAIT, description="Wait up to this long (s) for the end"),
    ] = 0,
) -> OutcomeResponse:
    """How the answer `message_id` ended (200), waiting up to `wait` seconds for its
    end; 202 with `done: false` while it has not ended. The wait holds one of the
    tenant's long-request slots, as a stream does (429/503 past the caps); waiters on
    the same answer share one wait on the session (`Session.answer(...).outcome`)."""
    slot = slots.take(owner)
    try:
        ended = await asyncio.wait_for(
            session.answer(message_id).outcome, max(wait, MIN_OUTCOME_LOOK)
        )
    except TimeoutError:
        response.status_code = 202
        return OutcomeResponse(message_id=message_id, done=False)
    finally:
        slot.release()
    return OutcomeResponse(
        message_id=message_id,
        done=True,
        status=ended.status.value,
        error=ended.error,
        error_type=ended.error_type,
    )


@router.post("/{session_id}/approvals")
async def approve(session: ExistingSession, body: ApprovalBody) -> SendResponse:
    """Answer a pending tool approval."""
    result = await session.approve(ApprovalResponse(**body.model_dump(by_alias=False)))
    return SendResponse(assistant_message_id=result.assistant_message_id)


@router.post("/{session_id}/interrupt", status_code=202)
async def interrupt(session: ExistingSession) -> dict[str, bool]:
    """Stop the running turn; its partial answer is kept."""
    await session.interrupt()
    return {"interrupted": True}


@router.get("/{session_id}/history")
async def history(
    session: ExistingSession,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> HistoryResponse:
    """The session's messages as AI SDK `UIMessage`s, oldest first, one page at a time
    (`useChat({messages})` takes them as they are)."""
    messages = await session.history(offset=offset, limit=limit)
    return HistoryResponse(messages=to_ui_messages(messages), offset=offset, count=len(messages))


@router.get("/{session_id}/usage")
async def usage(session: ExistingSession) -> UsageResponse:
    """Token use and cost per step and per turn, in total and by model."""
    report = await session.usage()
    return UsageResponse.model_validate(report.model_dump())


@router.get("/{session_id}")
async def info(session: ExistingSession, owner: Tenant) -> InfoResponse:
    """What the session is doing, its sandbox id, message count and token totals."""
    found = (await session.info()).model_dump()
    found["session_id"] = session.id.removeprefix(f"{owner}:")  # as the tenant named it
    return InfoResponse.model_validate(found)


@router.patch("/{session_id}")
async def update(session: ExistingSession, body: UpdateBody) -> dict[str, bool]:
    """Switch the session's sandbox and/or rewind it to `last_message_id`."""
    await session.update(
        sandbox_id=body.sandbox_id,
        last_message_id=body.last_message_id,
        max_steps_per_turn=body.max_steps_per_turn,
        webhook_url=body.webhook_url,
    )
    return {"updated": True}


@router.post("/{session_id}/fork", status_code=201)
async def fork(session: ExistingSession, owner: Tenant, body: ForkBody) -> ForkResponse:
    """Start session `newId` (this tenant's) with this one's history up to
    `atMessageId` (the newest if absent), the same agent and the state as of that
    message; this session is left as it was. 409 `session_busy` while a turn runs,
    409 `session_exists` if `newId` runs, 404 `message_not_found`."""
    await session.fork(tenant_session_id(owner, body.new_id), at_message_id=body.at_message_id)
    return ForkResponse(session_id=body.new_id)


@router.delete("/{session_id}", status_code=204, response_class=Response)
async def delete(session: ExistingSession) -> Response:
    """Erase the session everywhere: its turn stops, queued messages are dropped, its
    sandbox, stream, stored payloads and Temporal history are deleted (204). The id
    is free again: a later message starts a new, empty session."""
    await session.delete()
    return Response(status_code=204)


@router.get(
    "/{session_id}/stream",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    session: ExistingSession,
    owner: Tenant,
    config: Config,
    slots: Slots,
    after: Annotated[str | None, Query(description="Resume after this event id")] = None,
    follow: bool = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The session's chunks as SSE: from `Last-Event-ID`/`after`, else from the start
    of the newest answer; ends after it unless `follow`. A cursor past the stream's
    newest event is refused at once (416): no chunk ever had that id."""
    cursor = last_event_id or after
    await session.check_cursor(cursor)
    events = session.stream(after=cursor, follow=follow)
    return sse_response(events, config.heartbeat_seconds, slots.take(owner))
