"""`/api/chat`: the AI SDK's `DefaultChatTransport`, so `useChat` works unchanged."""

from __future__ import annotations

from fastapi import APIRouter, Response

from sessionflow.client import Session, parse_send_input
from sessionflow.errors import InvalidInput
from sessionflow.gateway.bodies import JsonBodyRoute
from sessionflow.gateway.models import ChatRequest
from sessionflow.gateway.sse import sse_response
from sessionflow.gateway.tenancy import AgentName, Client, Config, Slots, Tenant, tenant_session
from sessionflow.messages import Role

router = APIRouter(prefix="/api/chat", route_class=JsonBodyRoute)


@router.post("", response_class=Response)
async def chat(
    body: ChatRequest,
    owner: Tenant,
    client: Client,
    config: Config,
    slots: Slots,
    agent: AgentName = None,
) -> Response:
    """Send the newest user message of the chat and stream the answer."""
    session = tenant_session(client, config, owner, body.id, agent)
    message = dict(body.messages[-1])
    if message.get("role") != Role.USER.value:
        raise InvalidInput("the last message must have role 'user'")
    # Validate before a regenerate rewinds: a malformed message must be refused
    # with the session as it was, not after its last answer has been dropped.
    parse_send_input(message)
    # The stream's slot before anything changes: over the cap, nothing is sent.
    slot = slots.take(owner)
    try:
        if body.trigger == "regenerate-message":
            await _rewind_before(session, str(message.get("id", "")))
        result = await session.send(message)
    except BaseException:
        slot.release()
        raise
    return sse_response(result.stream(), config.heartbeat_seconds, slot)


@router.get("/{chat_id}/stream", response_class=Response)
async def resume(
    chat_id: str,
    owner: Tenant,
    client: Client,
    config: Config,
    slots: Slots,
    agent: AgentName = None,
) -> Response:
    """Resume the answer being streamed, or 204 when none is."""
    session = tenant_session(client, config, owner, chat_id, agent)
    if not await session.is_streaming():
        return Response(status_code=204)
    return sse_response(session.stream(), config.heartbeat_seconds, slots.take(owner))


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
