"""The user's files as model providers read them, and the one rule they share.

A user message is text and files (`FilePart`: a base64 `data:` URL or an `https://`
link); its data parts are app data, never shown to a model. Each provider turns a file
into its own API's shape, and raises `InvalidModelRequest` (the turn fails, it is not
retried) for one its API cannot take. That error only fails the turn when the file is
in the user message being answered; in an older message the file becomes a note, so one
bad file cannot fail every later turn.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from sessionflow.errors import InvalidModelRequest
from sessionflow.messages import FilePart, Message, Role, TextPart

# What both APIs take: these images, PDFs, and plain text.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PDF = "application/pdf"
TEXT = "text/plain"

ContentPart = dict[str, Any]


def last_user_message(messages: list[Message]) -> int:
    """The index of the user message being answered (-1 when there is none)."""
    return max((i for i, m in enumerate(messages) if m.role is Role.USER), default=-1)


def user_content(
    message: Message, file_content: Callable[[FilePart], ContentPart], *, strict: bool
) -> list[ContentPart]:
    """A user message's text and files as content parts (`{"type": "text", "text"}` in
    both APIs, and what `file_content` makes of each file). With `strict`, a file it
    refuses fails the turn; otherwise it becomes a `[file 'x': not sent]` note."""
    content: list[ContentPart] = []
    for part in message.parts:
        if isinstance(part, TextPart) and part.text:
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, FilePart):
            try:
                content.append(file_content(part))
            except InvalidModelRequest:
                if strict:
                    raise
                content.append({"type": "text", "text": f"[{file_name(part)}: not sent]"})
    return content


def media_type(part: FilePart) -> str:
    """The full media type: the AI SDK allows just `image`; a data: URL says the rest."""
    media = part.media_type.split(";")[0].strip().lower()
    if "/" not in media and part.url.startswith(f"data:{media}/"):
        media = part.url[5:].split(";")[0].split(",")[0].lower()
    return media


def file_name(part: FilePart) -> str:
    """How errors and notes name a file: `file 'notes.txt'`, or `a file`."""
    return f"file {part.filename!r}" if part.filename else "a file"


def is_link(part: FilePart) -> bool:
    return part.url.startswith("https://")


def base64_data(part: FilePart) -> str:
    """The content of a data: URL (always base64: `client.inputs` refuses others)."""
    return part.url.partition(",")[2]


def data_url(part: FilePart, media: str) -> str:
    """The file as a data: URL that names its full media type."""
    return f"data:{media};base64,{base64_data(part)}"


def decoded_text(part: FilePart) -> str:
    """A `text/plain` data: URL's content; `InvalidModelRequest` if it is not UTF-8."""
    try:
        return base64.b64decode(base64_data(part)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise InvalidModelRequest(f"{file_name(part)} is not UTF-8 text") from None


def unsupported(part: FilePart, models: str) -> InvalidModelRequest:
    """The error for a file of a type no provider here sends."""
    return InvalidModelRequest(
        f"{file_name(part)} is {part.media_type!r}: {models} take images "
        f"({', '.join(sorted(IMAGE_TYPES))}), {PDF} and {TEXT} files"
    )
