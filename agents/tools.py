"""`tool(...)`: a capability the model may call, and the context it runs with.

A tool's `execute` is user code, so it only ever runs inside the `run_tool`
activity, never in the workflow. It receives its validated input and a
`ToolContext` with the session around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from sessionflow.contract import ActivitySettings
from sessionflow.messages import Message
from sessionflow.sandbox.base import Sandbox

InputT = TypeVar("InputT", bound=BaseModel)


@dataclass
class ToolContext:
    """What a tool can see and use while it runs.

    `state` is the session's state, mutable: changes are saved when the tool
    returns. `context` is the turn's transient context (never persisted).
    `stream_output(value)` shows `value` as the call's output so far (a preliminary
    `tool-output-available`, which replaces the last one): within the worker's stream
    budget, past which progress is summarised rather than streamed
    (`sessionflow.streams.budget`), so send a tail, not everything so far.
    `cancelled` is set when the turn is interrupted: the tool then has half a second
    to stop by itself (and clean up) before its task is cancelled, which also kills
    the commands it runs through `sandbox.exec`.
    `idempotency_key` is the same on every attempt of this call and different for
    every other call: pass it to services that deduplicate requests (a payment API's
    `Idempotency-Key`), so a call retried after a lost worker does not act twice.
    """

    session_id: str
    tool_call_id: str
    sandbox: Sandbox
    messages: Sequence[Message]
    state: Any = None
    context: Any = None
    stream_output: Callable[[Any], None] = lambda _output: None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    idempotency_key: str = ""


class SandboxNotDeclared(RuntimeError):
    """A tool defined without `sandbox=True` used `ctx.sandbox`."""


class NoSandbox:
    """`ctx.sandbox` of a tool defined without `sandbox=True`: it has no sandbox (the
    session may have none), and says so, with the fix, on any use."""

    def __init__(self, tool_name: str) -> None:
        self._tool_name = tool_name

    def __getattr__(self, name: str) -> Any:
        raise SandboxNotDeclared(
            f"tool {self._tool_name!r} used ctx.sandbox.{name} but was defined without "
            f"sandbox=True: define it with tool(..., sandbox=True) to work in the "
            f"session's sandbox"
        )


Execute = Callable[[InputT, ToolContext], Awaitable[Any]]
# True, False, or a function of the validated input deciding per call.
NeedsApproval = bool | Callable[[Any], bool | Awaitable[bool]]


@dataclass(frozen=True)
class Tool(Generic[InputT]):
    name: str
    description: str
    input_schema: type[InputT]
    execute: Execute[InputT]
    needs_approval: NeedsApproval = False
    activity: ActivitySettings | None = None
    # The input's JSON Schema when it is given as such rather than derived from
    # `input_schema` (an MCP server's tools): what the model is shown. `input_schema`
    # then checks calls against it.
    input_json_schema: dict[str, Any] | None = None
    # False: a call whose attempt may have started is never run again; a retry tells
    # the model its outcome is unknown instead (see `tool`).
    retryable: bool = True
    # True: the tool works in the session's sandbox (`ctx.sandbox`), which is made for
    # its first call; a session whose calls are all of tools without it gets none.
    sandbox: bool = False

    def json_schema(self) -> dict[str, Any]:
        """The input schema as JSON Schema, the form model providers take."""
        if self.input_json_schema is not None:
            return dict(self.input_json_schema)
        return self.input_schema.model_json_schema()


def tool(
    name: str,
    description: str,
    *,
    input_schema: type[InputT],
    execute: Execute[InputT],
    needs_approval: NeedsApproval = False,
    activity: ActivitySettings | None = None,
    retryable: bool = True,
    sandbox: bool = False,
) -> Tool[InputT]:
    """Define a tool.

    Args:
        name: what the model calls it; letters, digits, '_' and '-'.
        description: tells the model when and how to use it.
        input_schema: a pydantic model; the model's arguments are validated against it
            and invalid ones are returned to the model as a tool error.
        execute: `async def execute(input, ctx) -> output`; the output must be
            JSON-serialisable (pydantic models are).
        needs_approval: whether a person must approve each call first: a bool, or
            a function of the validated input.
        activity: timeouts and retries of this tool's calls (e.g. a longer
            `start_to_close` for a slow build, `max_attempts=1` for a tool with side
            effects that must not repeat); unset fields keep the agent's or defaults.
        retryable: False for a tool whose side effect must not happen twice and that
            cannot deduplicate it with `ctx.idempotency_key`: once a call of it has
            started, a retry (after a lost worker, say) does not run it again but
            answers the model "outcome unknown", and so does a call whose every
            attempt timed out; the turn goes on either way.
        sandbox: True for a tool that works in the session's sandbox (`ctx.sandbox`,
            as the built-in Bash, Read, Write, Edit, List and Grep do). The sandbox is
            made when the first such call runs: a session that only calls tools without
            it never has one (and no idle pause timer). A tool without it that touches
            `ctx.sandbox` fails with `SandboxNotDeclared`, telling how to fix it.
    """
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"invalid tool name {name!r}: use letters, digits, '_' and '-'")
    if not (isinstance(input_schema, type) and issubclass(input_schema, BaseModel)):
        raise TypeError(f"tool {name!r}: input_schema must be a pydantic model class")
    if not asyncio.iscoroutinefunction(execute):
        raise TypeError(f"tool {name!r}: execute must be an async function")
    return Tool(
        name=name,
        description=description,
        input_schema=input_schema,
        execute=execute,
        needs_approval=needs_approval,
        activity=activity,
        retryable=retryable,
        sandbox=sandbox,
    )
