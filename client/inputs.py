"""Turning what a caller passes to `send` into a user message or an approval.

Accepted, as in the reference agent SDK:
- a string;
- a UI message `{"role": "user", "parts": [...], "metadata": ..., "id": ...}`;
- a list of parts;
- `{"type": "message", "message": <UI message>}`;
- `{"type": "approval", "approval": {"approval_id": ..., "approved": bool, "reason": ...}}`.
Anything else is an `InvalidInput` naming what is wrong.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ValidationError

from sessionflow.errors import InvalidInput
from workflows.contract import ApprovalResponse
from workflows.messages import Message, MessageStatus, Role, TextPart

# A single message larger than this would crowd Temporal's 2 MB payload limit.
MAX_MESSAGE_BYTES = 256 * 1024

SendInput = str | Message | dict[str, Any] | list[dict[str, Any]]


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def parse_send_input(value: Any) -> Message | ApprovalResponse:
    if isinstance(value, dict) and value.get("type") == "approval":
        return _approval(value.get("approval"))
    if isinstance(value, dict) and value.get("type") == "message":
        return user_message(value.get("message"))
    return user_message(value)


def _approval(value: Any) -> ApprovalResponse:
    if not isinstance(value, dict):
        raise InvalidInput("an approval must be {'approval_id': ..., 'approved': bool}")
    data = {
        "approval_id": value.get("approval_id", value.get("approvalId")),
        "approved": value.get("approved"),
        "reason": value.get("reason"),
    }
    try:
        return ApprovalResponse.model_validate(data, strict=True)
    except ValidationError as err:
        raise InvalidInput(f"invalid approval: {_errors(err)}") from None


def user_message(value: Any) -> Message:
    """Accept a string, a `Message`, a UI message dict or a parts list, role "user"."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput("message text is empty")
        message = Message(id=new_message_id(), role=Role.USER, parts=[TextPart(text=value)])
    elif isinstance(value, Message):
        message = value
    elif isinstance(value, list):
        message = _validated({"role": "user", "parts": value})
    elif isinstance(value, dict):
        message = _validated(value)
    else:
        raise InvalidInput(f"cannot send a {type(value).__name__}; pass a string or a message")
    if message.role is not Role.USER:
        raise InvalidInput(f"messages sent to a session must have role 'user', not {message.role}")
    if not message.parts:
        raise InvalidInput("message has no parts")
    size = len(message.model_dump_json())
    if size > MAX_MESSAGE_BYTES:
        raise InvalidInput(f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")
    return message.model_copy(update={"status": MessageStatus.COMPLETE})


def _validated(data: dict[str, Any]) -> Message:
    try:
        return Message.model_validate({"id": new_message_id(), **data})
    except ValidationError as err:
        raise InvalidInput(f"invalid message: {_errors(err)}") from None


def _errors(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in err.errors())


def validate_context(schema: type[BaseModel] | None, context: Any) -> Any:
    """Validate context against the agent's schema; return it as JSON-ready data.

    Errors name the failing fields but never echo values: context may hold secrets.
    """
    if context is None:
        return None
    if schema is None:
        if isinstance(context, BaseModel):
            return context.model_dump(mode="json")
        return context
    try:
        model = context if isinstance(context, schema) else schema.model_validate(context)
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise InvalidInput(f"context does not match {schema.__name__}: {fields}") from None
    return model.model_dump(mode="json")
