"""Messages as the AI SDK's `UIMessage`, and the AI SDK's user message parts as ours.

`history()` over HTTP answers `UIMessage[]` so that a front end can hand it to
`useChat({messages})` (or `validateUIMessages`) unchanged, and a message a front end
sends comes in the same shape. The AI SDK's schema is strict where ours is lax: an
optional field is absent, never `null`; a tool part's fields depend on its `state`
(`output` only with `output-available`, `errorText` only with `output-error`, an
`approval` whose `approved` matches the state). The two directions live here, in one
place, so that what goes out is what comes back in.

What has no place in a `UIMessage` goes in its `metadata`: an assistant message's
`status` (`streaming`, `complete`, `interrupted`, `failed`) and, when it failed, the
`error`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sessionflow.messages import (
    DataPart,
    FilePart,
    Message,
    MessageStatus,
    Part,
    ReasoningPart,
    Role,
    StepStartPart,
    TextPart,
    ToolApproval,
    ToolPart,
    ToolState,
)

# Where the AI SDK's Anthropic provider keeps a reasoning block's signature.
SIGNATURE_PROVIDER = "anthropic"


def to_ui_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [to_ui_message(m) for m in messages]


def to_ui_message(message: Message) -> dict[str, Any]:
    """`{id, role, parts, metadata?}` as the AI SDK's `validateUIMessages` accepts it."""
    streaming = message.status is MessageStatus.STREAMING
    last = len(message.parts) - 1
    parts = [_ui_part(p, streaming and i == last) for i, p in enumerate(message.parts)]
    ui: dict[str, Any] = {"id": message.id, "role": message.role.value, "parts": parts}
    metadata = dict(message.metadata or {})
    if message.role is Role.ASSISTANT:
        metadata["status"] = message.status.value
    if metadata or message.metadata is not None:
        ui["metadata"] = metadata
    return ui


def _ui_part(part: Part, streaming: bool) -> dict[str, Any]:
    state = "streaming" if streaming else "done"
    ui: dict[str, Any]
    match part:
        case TextPart():
            return {"type": "text", "text": part.text, "state": state}
        case ReasoningPart():
            ui = {"type": "reasoning", "text": part.text, "state": state}
            if part.signature:
                ui["providerMetadata"] = {SIGNATURE_PROVIDER: {"signature": part.signature}}
            return ui
        case StepStartPart():
            return {"type": "step-start"}
        case ToolPart():
            return _ui_tool(part)
        case FilePart():
            ui = {"type": "file", "mediaType": part.media_type, "url": part.url}
            if part.filename is not None:
                ui["filename"] = part.filename
            return ui
        case DataPart():
            ui = {"type": part.type}
            if part.id is not None:
                ui["id"] = part.id
            ui["data"] = part.data
            return ui
    raise TypeError(f"no UI part for {type(part).__name__}")  # pragma: no cover


def _ui_tool(part: ToolPart) -> dict[str, Any]:
    """A tool part in the AI SDK's state machine. Ours keeps an approval's answer on the
    part while the call waits to run (`approval-requested` with `approved` set): that
    is the AI SDK's `approval-responded`."""
    ui: dict[str, Any] = {
        "type": f"tool-{part.tool_name}",
        "toolCallId": part.tool_call_id,
        "state": part.state.value,
        "input": part.input,
    }
    approval = part.approval
    match part.state:
        case ToolState.INPUT_AVAILABLE:
            pass
        case ToolState.APPROVAL_REQUESTED if approval is not None:
            if approval.approved is None:
                ui["approval"] = {"id": approval.id}
            else:
                ui["state"] = "approval-responded"
                ui["approval"] = _answered(approval, approval.approved)
        case ToolState.APPROVAL_REQUESTED:  # no approval to answer: waiting to run
            ui["state"] = ToolState.INPUT_AVAILABLE.value
        case ToolState.OUTPUT_AVAILABLE:
            ui["output"] = part.output
            if approval is not None and approval.approved is True:
                ui["approval"] = _answered(approval, True)
        case ToolState.OUTPUT_ERROR:
            ui["errorText"] = part.error_text or "the tool call failed"
            if approval is not None and approval.approved is True:
                ui["approval"] = _answered(approval, True)
        case ToolState.OUTPUT_DENIED if approval is not None:
            ui["approval"] = _answered(approval, False)
        case ToolState.OUTPUT_DENIED:  # denied without an approval: say so as an error
            ui["state"] = ToolState.OUTPUT_ERROR.value
            ui["errorText"] = part.error_text or "the tool call was denied"
    return ui


def _answered(approval: ToolApproval, approved: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": approval.id, "approved": approved}
    if approval.reason is not None:
        answer["reason"] = approval.reason
    return answer


# -- the other way: parts a front end sends --------------------------------------------

# Fields of the AI SDK's user message parts that say nothing we keep: a text part's
# streaming `state`, provider metadata.
_DROPPED = ("state", "providerMetadata")
_RENAMED = {"mediaType": "media_type"}


def from_ui_part(part: Any) -> Any:
    """A user message part as the AI SDK writes it (`{type: "file", mediaType, url}`,
    `{type: "text", text, state}`) in the shape `Message` validates; anything else is
    returned as it is, for validation to judge."""
    if not isinstance(part, dict) or part.get("type") not in ("text", "file", "reasoning"):
        return part
    converted = {_RENAMED.get(k, k): v for k, v in part.items() if k not in _DROPPED}
    return converted
