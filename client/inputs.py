"""Turning what a caller passes to `send` into a user message or an approval.

Accepted, as in the reference agent SDK:
- a string;
- a UI message `{"role": "user", "parts": [...], "metadata": ..., "id": ...}`, its parts
  as the AI SDK writes them (`text`, `file` with `mediaType` and `url`, `data-<name>`);
- a list of parts;
- `{"type": "message", "message": <UI message>}`;
- `{"type": "approval", "approval": {"approval_id": ..., "approved": bool, "reason": ...}}`.
Anything else is an `InvalidInput` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from sessionflow.budgets import Budget
from sessionflow.contract import ApprovalResponse, IfBusy
from sessionflow.errors import InvalidInput
from sessionflow.json_limits import check_json_depth
from sessionflow.messages import (
    MAX_FILE_BYTES,
    MAX_MESSAGE_FILE_BYTES,
    DataPart,
    FilePart,
    Message,
    MessageStatus,
    Role,
    TextPart,
)
from sessionflow.ui_messages import from_ui_part
from sessionflow.validation import describe

# A message larger than this, files aside, would crowd Temporal's 2 MB payload limit.
MAX_MESSAGE_BYTES = 256 * 1024
# Files have limits of their own (MAX_FILE_BYTES, MAX_MESSAGE_FILE_BYTES in messages).
# An https:// file reference is a URL, not a payload.
MAX_FILE_URL_CHARS = 8 * 1024
MAX_MEDIA_TYPE_CHARS = 255
# Sandbox ids are short (E2B's are ~20 characters, local ones at most 64).
MAX_SANDBOX_ID_LENGTH = 256


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def parse_send_input(value: Any) -> Message | ApprovalResponse:
    # First, before anything walks it recursively: deeper JSON would wedge the session.
    check_json_depth(value, "the message")
    if isinstance(value, dict) and value.get("type") == "approval":
        return _approval(value.get("approval"))
    if isinstance(value, dict) and value.get("type") == "message":
        return user_message(value.get("message"))
    return user_message(value)


def parse_approval(value: Any) -> ApprovalResponse:
    """What `Session.approve` accepts: an `ApprovalResponse` or the approval dict of
    `send`, checked strictly here so a malformed one is an `InvalidInput` in the caller
    instead of a raw Temporal update failure (or a lax "yes" read as `approved=True`
    by the workflow's converter)."""
    if isinstance(value, ApprovalResponse):
        value = value.model_dump()
    return _approval(value)


def _approval(value: Any) -> ApprovalResponse:
    if not isinstance(value, dict):
        raise InvalidInput("an approval must be {'approval_id': ..., 'approved': bool}")
    data = {
        "approval_id": value.get("approval_id", value.get("approvalId")),
        "approved": value.get("approved"),
        "reason": value.get("reason"),
    }
    try:
        response = ApprovalResponse.model_validate(data, strict=True)
    except ValidationError as err:
        raise InvalidInput(f"invalid approval: {_errors(err)}") from None
    # Bounded like a message (a reason is free text): with a 3 MB reason, over Temporal's
    # 2 MB payload limit, `approve` got no answer at all until the caller gave up.
    _check_json_size("approval", response)
    if response.reason is not None and len(response.reason) > MAX_REASON_CHARS:
        raise InvalidInput(
            f"an approval's reason is at most {MAX_REASON_CHARS} characters, "
            f"not {len(response.reason)}"
        )
    return response


def user_message(value: Any) -> Message:
    """Accept a string, a `Message`, a UI message dict or a parts list, role "user"."""
    check_json_depth(value, "the message")
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
    if all(isinstance(p, DataPart) for p in message.parts):
        # The model is never shown data parts: it would answer nothing at all.
        raise InvalidInput("message has only data parts; add a text or file part")
    file_bytes = _check_files(message.file_parts())
    _check_json_size("message", message, file_bytes)
    return message.model_copy(update={"status": MessageStatus.COMPLETE})


def _check_files(files: list[FilePart]) -> int:
    """Check each file part's URL and size; return the characters their data URLs take
    (they count against the files' limits, not the message's)."""
    decoded_total = url_chars = 0
    for n, part in enumerate(files):
        name = f"file {n + 1}" + (f" ({part.filename!r})" if part.filename else "")
        media = part.media_type
        if not media.strip() or len(media) > MAX_MEDIA_TYPE_CHARS or not media.isprintable():
            raise InvalidInput(f"{name}: mediaType must be a media type such as 'image/png'")
        if part.url.startswith("https://"):
            if len(part.url) > MAX_FILE_URL_CHARS or not part.url.isprintable():
                raise InvalidInput(
                    f"{name}: an https:// URL is at most {MAX_FILE_URL_CHARS} printable characters"
                )
            continue
        size = _data_url_bytes(name, part.url)
        if size > MAX_FILE_BYTES:
            raise InvalidInput(
                f"{name} is {size} bytes; a file is at most {MAX_FILE_BYTES} bytes "
                f"({MAX_FILE_BYTES // (1024 * 1024)} MiB) once decoded"
            )
        decoded_total += size
        url_chars += len(part.url)
    if decoded_total > MAX_MESSAGE_FILE_BYTES:
        raise InvalidInput(
            f"the message's files are {decoded_total} bytes together; at most "
            f"{MAX_MESSAGE_FILE_BYTES} bytes ({MAX_MESSAGE_FILE_BYTES // (1024 * 1024)} MiB) "
            "go in one message"
        )
    return url_chars


def _data_url_bytes(name: str, url: str) -> int:
    """The decoded size of a base64 `data:` URL; `InvalidInput` for any other URL."""
    header, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not header.endswith(";base64"):
        raise InvalidInput(
            f"{name}: url must be a base64 data: URL ('data:<media type>;base64,...') "
            "or an https:// URL"
        )
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{name}: the data: URL's content is not valid base64") from None


def _check_json_size(what: str, model: BaseModel, exempt: int = 0) -> None:
    """Refuse what cannot travel through Temporal as JSON, or is over the size limit
    (not counting `exempt` characters: files' data URLs, bounded on their own).

    Text with lone surrogates (e.g. a JSON `"\\ud800"` escape) or metadata holding
    non-JSON values (objects, invalid UTF-8 bytes, cycles) validate as `str`/`Any`
    but fail to serialize; without this check the caller got a raw
    `PydanticSerializationError` from inside the Temporal client (a 500 in the gateway).
    """
    try:
        size = len(model.model_dump_json()) - exempt
    except PydanticSerializationError as err:
        raise InvalidInput(f"{what} cannot be sent as JSON: {err}") from None
    if size > MAX_MESSAGE_BYTES:
        raise InvalidInput(f"{what} is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")


def validate_send_options(interrupt_if_streaming: Any, sandbox_id: Any) -> None:
    """`send`'s keyword options, checked before they reach `SendRequest` (whose
    pydantic `ValidationError` would otherwise leak out of `send`)."""
    if not isinstance(interrupt_if_streaming, bool):
        raise InvalidInput(
            f"interrupt_if_streaming must be a bool, not {type(interrupt_if_streaming).__name__}"
        )
    if sandbox_id is None:
        return
    if not isinstance(sandbox_id, str) or not sandbox_id:
        raise InvalidInput("sandbox_id must be a non-empty string or None")
    if len(sandbox_id) > MAX_SANDBOX_ID_LENGTH or not _is_utf8(sandbox_id):
        raise InvalidInput(
            f"sandbox_id must be valid text of at most {MAX_SANDBOX_ID_LENGTH} characters"
        )


def parse_budget(budget: Any) -> Budget | None:
    """`send(budget=...)`: a `Budget`, a dict of its fields, or None."""
    if budget is None or isinstance(budget, Budget):
        return budget
    if not isinstance(budget, Mapping):
        raise InvalidInput(f"budget must be a Budget or a dict, not {type(budget).__name__}")
    try:
        return Budget.model_validate(dict(budget))
    except ValidationError as err:
        raise InvalidInput(f"budget: {describe(err, Budget)}") from None


def parse_if_busy(value: Any, interrupt: bool) -> IfBusy:
    """`send`'s `if_busy` (an `IfBusy` or its name; None: `enqueue`, or `interrupt`
    when `interrupt_if_streaming` asks for it). Both options given must agree."""
    if value is None:
        return IfBusy.INTERRUPT if interrupt else IfBusy.ENQUEUE
    try:
        strategy = IfBusy(value)
    except ValueError:
        names = ", ".join(repr(s.value) for s in IfBusy)
        raise InvalidInput(f"if_busy must be one of {names}, not {value!r}") from None
    if interrupt and strategy is not IfBusy.INTERRUPT:
        raise InvalidInput(
            f"interrupt_if_streaming asks for if_busy='interrupt', but if_busy is "
            f"{strategy.value!r}: give one of them"
        )
    return strategy


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _validated(data: dict[str, Any]) -> Message:
    parts = data.get("parts")
    if isinstance(parts, list):
        data = {**data, "parts": [from_ui_part(p) for p in parts]}
    try:
        return Message.model_validate({"id": new_message_id(), **data})
    except ValidationError as err:
        raise InvalidInput(f"invalid message: {_errors(err)}") from None


def _errors(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in err.errors())


# A denial's reason is told to the model and kept in the transcript.
MAX_REASON_CHARS = 8 * 1024
# Context is kept in Redis, not Temporal, but it is loaded by every step of its turn.
MAX_CONTEXT_BYTES = 64 * 1024


def validate_context(schema: type[BaseModel] | None, context: Any) -> Any:
    """Validate context against the agent's schema; return it as JSON-ready data.

    Errors name the failing fields but never echo values: context may hold secrets.
    """
    check_json_depth(context, "context")
    data = _context_data(schema, context)
    if data is not None:
        size = len(json.dumps(data).encode())
        if size > MAX_CONTEXT_BYTES:
            raise InvalidInput(f"context is {size} bytes; at most {MAX_CONTEXT_BYTES} are kept")
    return data


def _context_data(schema: type[BaseModel] | None, context: Any) -> Any:
    if context is None:
        if schema is not None:
            # No context is fine only when the schema's defaults make a valid one; else
            # the turn could only fail later, in the worker.
            try:
                schema.model_validate({})
            except ValidationError as err:
                raise InvalidInput(
                    f"this agent needs context ({schema.__name__}): "
                    f"pass context=... with {describe(err, schema)}"
                ) from None
        return None
    if schema is None:
        if isinstance(context, BaseModel):
            return context.model_dump(mode="json")
        # It is stored as JSON: refuse what cannot be (a raw TypeError otherwise).
        try:
            json.dumps(context)
        except (TypeError, ValueError) as err:
            raise InvalidInput(f"context must be JSON data ({err})") from None
        return context
    try:
        model = context if isinstance(context, schema) else schema.model_validate(context)
    except ValidationError as err:
        raise InvalidInput(
            f"context does not match {schema.__name__}: {describe(err, schema)}"
        ) from None
    return model.model_dump(mode="json")
