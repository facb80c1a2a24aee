"""`/api/chat`: the AI SDK's `DefaultChatTransport`, so `useChat` works unchanged.

Tool approvals go the AI SDK's own way (`addToolApprovalResponse`, then
`sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses`): the
stream of an answer that stops to ask for approvals ends there, with `finish`
(`finishReason: "tool-calls"`), so `useChat` is `ready` while a person decides; the
POST that follows, whose last message is that assistant message with its tool parts
`approval-responded`, answers the approvals and streams the rest of the answer (the
same message, from where it stopped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response

from sessionflow.chunks import FinishChunk, StartChunk, is_approval_status
from sessionflow.client import Session, StreamEvent, parse_send_input
from sessionflow.contract import ApprovalResponse
from sessionflow.errors import ApprovalNotPending, InvalidInput
from sessionflow.gateway.bodies import JsonBodyRoute
from sessionflow.gateway.models import ChatRequest
from sessionflow.gateway.slots import Slot
from sessionflow.gateway.sse import sse_response
from sessionflow.gateway.tenancy import AgentName, Client, Config, Slots, Tenant, tenant_session
from sessionflow.messages import Role

router = APIRouter(prefix="/api/chat", route_class=JsonBodyRoute)

# How an answer that stops to ask for approvals ends its stream (the AI SDK's own
# `streamText` ends a step that needs approvals the same way).
APPROVAL_FINISH = FinishChunk(finish_reason="tool-calls")


@router.post("", response_class=Response)
async def chat(
    body: ChatRequest,
    owner: Tenant,
    client: Client,
    config: Config,
    slots: Slots,
    agent: AgentName = None,
) -> Response:
    """Send the newest user message of the chat and stream the answer; or, when the
    last message is the assistant's with tool approvals answered
    (`approval-responded`), apply them and stream the rest of that answer."""
    session = tenant_session(client, config, owner, body.id, agent)
    message = dict(body.messages[-1])
    if message.get("role") == Role.ASSISTANT.value:
        return await _answer_approvals(session, message, config, slots.take(owner))
    if message.get("role") != Role.USER.value:
        raise InvalidInput(
            "the last message must have role 'user', or be the assistant message whose "
            "tool approvals were answered (parts in state 'approval-responded')"
        )
    # Validate before a regenerate rewinds: a malformed message must be refused
    # with the session as it was, not after its last answer has been dropped.
    parse_send_input(message)
    # The stream's slot before anything changes: over the cap, nothing is sent.
    slot = slots.take(owner)
    try:
        if body.trigger == "regenerate-message":
            await _rewind_before(session, str(message.get("id", "")))
        result = await session.send(
            message,
            context=body.context,
            budget=body.budget.model_dump(by_alias=False) if body.budget else None,
        )
    except BaseException:
        slot.release()
        raise
    return sse_response(until_approval(session, result.stream()), config.heartbeat_seconds, slot)


@router.get("/{chat_id}/stream", response_class=Response)
async def resume(
    chat_id: str,
    owner: Tenant,
    client: Client,
    config: Config,
    slots: Slots,
    agent: AgentName = None,
) -> Response:
    """Resume the answer being streamed, or 204 when none is (an answer waiting for
    approvals is not: the history shows its requests)."""
    session = tenant_session(client, config, owner, chat_id, agent)
    if not await session.is_streaming() or await session.waits_for_approval():
        return Response(status_code=204)
    events = until_approval(session, session.stream())
    return sse_response(events, config.heartbeat_seconds, slots.take(owner))


async def until_approval(
    session: Session, events: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    """`events` up to the end of the answer, or up to where it waits for approvals:
    then a `finish` ends the stream (the answer goes on in the POST that answers them)."""
    try:
        async for event in events:
            yield event
            if is_approval_status(event.chunk) and await session.waits_for_approval(event):
                yield dataclasses.replace(event, chunk=APPROVAL_FINISH)
                return
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


def approval_answers(message: dict[str, Any]) -> list[ApprovalResponse]:
    """The approvals an assistant UI message answers: its tool parts in state
    `approval-responded`, `approval: {id, approved, reason?}` (as
    `addToolApprovalResponse` leaves them)."""
    parts = message.get("parts")
    answers = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or part.get("state") != "approval-responded":
            continue
        approval = part.get("approval")
        if not isinstance(approval, dict):
            raise InvalidInput("a tool part in state 'approval-responded' needs its 'approval'")
        fields = {k: approval.get(k) for k in ("approved", "reason")}
        parsed = parse_send_input(
            {"type": "approval", "approval": {"approval_id": approval.get("id"), **fields}}
        )
        assert isinstance(parsed, ApprovalResponse)
        answers.append(parsed)
    return answers


async def _answer_approvals(
    session: Session, message: dict[str, Any], config: Config, slot: Slot
) -> Response:
    try:
        answers = approval_answers(message)
        if not answers:
            raise InvalidInput(
                "the last message is the assistant's but answers no tool approval: send "
                "a user message, or answer an approval (addToolApprovalResponse)"
            )
        message_id = str(message.get("id", ""))
        for answer in answers:
            try:
                message_id = (await session.approve(answer)).assistant_message_id
            except ApprovalNotPending:
                # Answered already (this request sent again, or answered elsewhere):
                # the answer goes on all the same; one never asked for is refused.
                if not await _answered(session, answer.approval_id):
                    raise
        point = await session.approval_point(message_id, {a.approval_id for a in answers})
        if point is None:
            raise InvalidInput(
                f"answer {message_id!r} asked for none of these approvals, or its stream "
                "has expired: read the session's history instead"
            )
    except BaseException:
        slot.release()
        raise
    start = StreamEvent(
        id=point, chunk=StartChunk(message_id=message_id), message_id=message_id, step=0, attempt=1
    )
    events = until_approval(
        session, _after(start, session.stream(after=point, message_id=message_id))
    )
    return sse_response(events, config.heartbeat_seconds, slot)


async def _after(
    first: StreamEvent, events: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    """`first`, then `events`: the rest of an answer opens with its `start` again, as the
    AI SDK's own continuation does, so the client keeps adding to the same message."""
    yield first
    try:
        async for event in events:
            yield event
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def _answered(session: Session, approval_id: str) -> bool:
    """Whether the session has an answer to approval `approval_id` on record."""
    for message in reversed(await session.history()):
        for part in message.tool_parts():
            if part.approval is not None and part.approval.id == approval_id:
                return part.approval.approved is not None
    return False


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
