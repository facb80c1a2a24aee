"""What resolvable agent options see, and how they are resolved.

`model`, `system` and `active_tools` may be plain values or functions of an
`AgentContext`, called before every model step inside the model-step activity
(never in the workflow, since they are user code).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast

from pydantic_core import to_jsonable_python

from sessionflow.errors import AgentOptionFailed, SessionflowError
from sessionflow.messages import Message

T = TypeVar("T")


@dataclass(frozen=True)
class AgentContext:
    """The session as a resolvable option sees it."""

    session_id: str
    messages: Sequence[Message]
    # The turn's transient context (validated against `context_schema`), or None.
    context: Any
    # The session's state (a `state_schema` instance, or a dict): read-only here; an
    # option that changes it fails its step (`AgentOptionFailed`), since only tools'
    # changes are saved.
    state: Any


Resolvable: TypeAlias = T | Callable[[AgentContext], T | Awaitable[T]]


async def resolve(value: Resolvable[T], ctx: AgentContext, *, option: str = "option") -> T:
    """The option's value for this step. An exception from user code here would be
    raised again by every retry, so it becomes `AgentOptionFailed`, naming the option."""
    if not callable(value):
        return value
    before = _frozen(ctx.state)
    try:
        result = value(ctx)
        if inspect.isawaitable(result):
            result = await result
    except SessionflowError:
        raise
    except Exception as err:
        raise AgentOptionFailed(f"the agent's {option} raised {type(err).__name__}: {err}") from err
    if _frozen(ctx.state) != before:
        raise AgentOptionFailed(
            f"the agent's {option} changed the session state; resolvable options see state "
            "read-only (change it in a tool, whose changes are saved after the call)"
        )
    return cast(T, result)


def _frozen(state: Any) -> str:
    """The state as JSON, to notice any change an option made to it in place."""
    return json.dumps(to_jsonable_python(state, fallback=repr), sort_keys=True)
