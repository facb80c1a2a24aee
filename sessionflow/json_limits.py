"""The one rule on the shape of JSON that anyone but us hands a session: at most
`MAX_JSON_DEPTH` levels of nesting (and, where a caller names one, a size in bytes).

Why: Temporal's data converter decodes every payload with pydantic's JSON parser,
which stops at 200 levels. A value that is deep enough to pass our own encoder but,
inside its envelopes (a signal's `SendRequest`, an activity's input, a query's answer),
past 200 fails to decode wherever it travels: a signal is dropped without a word, a
workflow task fails "Failed decoding arguments" on every attempt, a query answers
nothing. 64 levels is far more than any message, context or tool input needs, and
leaves the envelopes well over a hundred levels of room.

Where it applies (each names what it refused and the limit; see `json_problem`):
- the client: messages (their parts, metadata and data parts), context, an
  interrupt's `last_part`, approvals (`sessionflow.client.inputs`);
- the gateway: every JSON request body, before FastAPI parses it into a model
  (`sessionflow.gateway.bodies`), with `BODY_ENVELOPE_DEPTH` levels for the body's
  own wrapping, so the client's check can name the field;
- what a model or tool returns: a tool call's input, a state update
  (`json_problem`, called by the activities).

Depth counts containers: `1` is 0 levels deep, `{"a": 1}` and `[1]` are 1, and
`{"a": [{"b": 1}]}` is 3. Pydantic models count as objects. The walk is iterative and
stops as soon as the limit is passed, so a value of any depth (or one that contains
itself) is judged in time proportional to the part of it within the limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from sessionflow.errors import JsonTooDeep

MAX_JSON_DEPTH = 64
# What a gateway request body may add around the values the client checks:
# `{"messages": [<message>]}` (/api/chat) wraps a message in two levels.
BODY_ENVELOPE_DEPTH = 2
# A tool call's input as a model returns it: what a message may be, files aside.
MAX_TOOL_INPUT_BYTES = 256 * 1024


def deeper_than(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` nests more than `limit` levels of objects and arrays."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        children: Any
        if isinstance(node, Mapping):
            children = node.values()
        elif isinstance(node, list | tuple):
            children = node
        elif isinstance(node, BaseModel):
            children = node.__dict__.values()
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        pending.extend((child, depth) for child in children)
    return False


def json_problem(
    value: Any,
    what: str = "the value",
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_bytes: int | None = None,
) -> str | None:
    """Why `value` may not enter a session, in one line naming `what` and the limit;
    None when it may.

    A problem when `value` nests deeper than `max_depth` levels, is not JSON data
    (only with `max_bytes`: it is then encoded to be measured), or encodes to more than
    `max_bytes` bytes of UTF-8 JSON. Never raises, whatever `value` is (cycles
    included), and never quotes it: it may hold secrets.
    """
    if deeper_than(value, max_depth):
        return (
            f"{what} is nested more than {max_depth} levels deep; at most {max_depth} "
            "levels of objects and arrays are accepted"
        )
    if max_bytes is None:
        return None
    try:
        size = len(json.dumps(value, ensure_ascii=False).encode())
    except (TypeError, ValueError, UnicodeEncodeError) as err:
        return f"{what} is not JSON data ({type(err).__name__})"
    if size > max_bytes:
        return f"{what} is {size} bytes as JSON; at most {max_bytes} are accepted"
    return None


def check_json_depth(value: Any, what: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise `JsonTooDeep` (an `InvalidInput`: 422 `json_too_deep` in the gateway) when
    `value` nests deeper than `max_depth` levels."""
    problem = json_problem(value, what, max_depth=max_depth)
    if problem is not None:
        raise JsonTooDeep(problem)
