"""Caps on what activities hand back to the workflow, so every step can be recorded.

Temporal refuses payloads over 2 MB, and a result it refuses is retried (running a
tool again) and then fails the workflow task: a session that never recovers. So each
thing a model or tool produces is capped here, with a marker saying what was cut, and
a whole result that is still too big fails its step cleanly, naming the cause.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from sessionflow.errors import PayloadTooLarge
from sessionflow.json_limits import json_problem

# Error texts (a tool's exception, a provider's message) reach the model and history.
MAX_ERROR_CHARS = 16 * 1024
# The session's state, saved after every step that changes it.
MAX_STATE_BYTES = 256 * 1024
# A whole activity result: well under Temporal's 2 MB limit for one payload.
MAX_RESULT_BYTES = 1536 * 1024


def capped_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text`, or its start and end with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters cut ...]\n{text[-keep:]}"


def state_size_problem(state: dict[str, Any] | None) -> str | None:
    """Why the state cannot be saved, or None when it can."""
    if state is None:
        return None
    deep = json_problem(state, "the session state")
    if deep is not None:
        return deep
    size = len(json.dumps(state, default=str).encode())
    if size <= MAX_STATE_BYTES:
        return None
    return (
        f"the session state would be {size} bytes, over the {MAX_STATE_BYTES}-byte limit; "
        "keep large data in the sandbox or your own store and reference it from state"
    )


def ensure_recordable(result: BaseModel, what: str) -> None:
    """Raise `PayloadTooLarge` (not retried) when `result` cannot be recorded."""
    size = len(result.model_dump_json().encode())
    if size > MAX_RESULT_BYTES:
        raise PayloadTooLarge(
            f"{what} produced {size} bytes, over the {MAX_RESULT_BYTES}-byte limit of one "
            "step; the turn stops here and the session keeps working"
        )
