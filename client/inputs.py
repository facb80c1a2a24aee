"""Turning what a caller passes to `send` into a user message, or a clear error."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError

from sessionflow.errors import InvalidInput
from workflows.messages import Message, MessageStatus, Role, TextPart

# A single message larger than this would crowd Temporal's 2 MB payload limit.
MAX_MESSAGE_BYTES = 256 * 1024


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def user_message(value: str | Message | dict[str, Any]) -> Message:
    """Accept a string, a `Message` or a UI message dict with role "user"."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput("message text is empty")
        message = Message(id=new_message_id(), role=Role.USER, parts=[TextPart(text=value)])
    elif isinstance(value, Message):
        message = value
    elif isinstance(value, dict):
        data = {"id": new_message_id(), **value}
        try:
            message = Message.model_validate(data)
        except ValidationError as err:
            raise InvalidInput(f"invalid message: {err}") from err
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
