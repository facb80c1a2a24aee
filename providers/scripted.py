"""The scripted model: an offline, deterministic stand-in for a real model.

A script is plain data: turns made of steps, each step some reasoning, some text
and some tool calls. Which step plays is derived from the transcript alone (the
number of user messages picks the turn, the steps already in the current answer
pick the step), so a retried or replayed step always plays the same thing.

Text may quote the conversation through placeholders, so scripted answers can show
what the model saw: `{last_user_text}`, `{last_tool_output}`, `{turn}` (1-based),
`{message_count}` and `{system}` (the resolved system prompt).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sessionflow.contract import FinishReason
from sessionflow.errors import ModelNotFound, ModelUnavailable
from sessionflow.messages import Message, Role, Usage
from sessionflow.providers.base import (
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    StepFinished,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStart,
)

PROVIDER = "scripted"


class ScriptedToolCall(BaseModel):
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)
    # The call id the model gives; a hostile model may repeat one (the runtime names
    # every call itself, see `StepRecorder`). By default a fresh one per call.
    id: str | None = None


class ScriptStep(BaseModel):
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    # Fail this many attempts part-way through the text, as a flaky model would.
    fail_attempts: int = 0


class Script(BaseModel):
    """A scripted model. Turns repeat from the first once all have been played."""

    model_config = ConfigDict(frozen=True)

    name: str
    turns: list[list[ScriptStep]]
    delay: float = 0.02
    chunk_size: int = 6
    # What it answers when asked to summarise a conversation (compaction);
    # `{message_count}` is how many characters of transcript it was given.
    summary: str = "Summary of the conversation so far ({message_count} characters)."

    @property
    def model_id(self) -> str:
        return f"{PROVIDER}/{self.name}"

    def step_for(self, messages: list[Message]) -> ScriptStep:
        user_turns = _user_turns(messages)
        steps = self.turns[max(user_turns - 1, 0) % len(self.turns)]
        current = messages[-1] if messages and messages[-1].role is Role.ASSISTANT else None
        index = current.step_count() if current else 0
        return steps[index] if index < len(steps) else ScriptStep()


def _earlier(messages: list[Message], key: str) -> int:
    """Messages a compaction summary stands for (`sessionflow.compaction`), so turns
    are counted as if every message had been sent."""
    total = 0
    for message in messages:
        counts = (message.metadata or {}).get("compaction")
        if isinstance(counts, dict):
            total += int(counts.get(key, 0)) - 1  # the summary itself is one message
    return total


def _user_turns(messages: list[Message]) -> int:
    return sum(1 for m in messages if m.role is Role.USER) + _earlier(messages, "userMessages")


def _last_tool_output(messages: list[Message]) -> str:
    for message in reversed(messages):
        for part in reversed(message.tool_parts()):
            output = part.output
            if isinstance(output, dict) and "stdout" in output:
                return str(output["stdout"]).strip()
            return part.error_text or json.dumps(output)
    return ""


def _fill(text: str, messages: list[Message], system: str | None) -> str:
    users = [m for m in messages if m.role is Role.USER]
    values = {
        "{system}": system or "",
        "{last_user_text}": users[-1].text() if users else "",
        "{last_tool_output}": _last_tool_output(messages),
        "{turn}": str(_user_turns(messages)),
        "{message_count}": str(len(messages) + _earlier(messages, "messages")),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _size(value: Any) -> int:
    """About how many characters `value` takes as JSON, without encoding it (a long
    session's transcript is tens of MB; every step estimates its input tokens)."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, BaseModel):
        return _size(dict(value))
    if isinstance(value, dict):
        return sum(len(str(k)) + 4 + _size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_size(v) + 1 for v in value) + 2
    return len(str(value))


class ScriptedProvider:
    """Plays scripts by name: `scripted/<name>`."""

    name = PROVIDER

    def __init__(self, scripts: Iterable[Script] = ()) -> None:
        self._scripts = {s.name: s for s in scripts}

    def add(self, script: Script) -> None:
        self._scripts[script.name] = script

    def script(self, name: str) -> Script:
        try:
            return self._scripts[name]
        except KeyError:
            known = ", ".join(sorted(self._scripts)) or "none"
            raise ModelNotFound(f"no script named {name!r} (known: {known})") from None

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        script = self.script(request.model)
        if request.purpose == "compaction":
            given = sum(len(m.text()) for m in request.messages)
            summary = script.summary.replace("{message_count}", str(given))
            for piece in _pieces(summary, script.chunk_size):
                yield TextDelta(piece)
                if script.delay > 0:
                    await asyncio.sleep(script.delay)
            yield StepFinished(
                reason=FinishReason.STOP,
                usage=Usage(
                    input_tokens=(given + 3) // 4,
                    output_tokens=_estimate_tokens(summary),
                ),
            )
            return
        step = script.step_for(request.messages)
        turn = _user_turns(request.messages)
        index = request.messages[-1].step_count() if request.messages else 0
        text = _fill(step.text, request.messages, request.system)
        output = ""

        async def pace() -> None:
            if script.delay > 0:
                await asyncio.sleep(script.delay)

        for piece in _pieces(
            _fill(step.reasoning, request.messages, request.system), script.chunk_size
        ):
            yield ReasoningDelta(piece)
            output += piece
            await pace()
        pieces = _pieces(text, script.chunk_size)
        fails = request.attempt <= step.fail_attempts
        for i, piece in enumerate(pieces):
            if fails and i == len(pieces) // 2:
                raise ModelUnavailable(f"scripted failure on attempt {request.attempt}")
            yield TextDelta(piece)
            output += piece
            await pace()
        if fails and not pieces:
            raise ModelUnavailable(f"scripted failure on attempt {request.attempt}")
        for n, call in enumerate(step.tool_calls):
            call_id = call.id or f"call_{turn}_{index}_{n}"
            arguments = json.dumps(call.input)
            yield ToolCallStart(call_id, call.tool)
            for piece in _pieces(arguments, script.chunk_size * 4):
                yield ToolCallDelta(call_id, piece)
            yield ToolCallReady(call_id, call.tool, call.input)
            output += arguments
            await pace()
        seen = sum(_size(m.parts) for m in request.messages)
        yield StepFinished(
            reason=FinishReason.TOOL_CALLS if step.tool_calls else FinishReason.STOP,
            usage=Usage(input_tokens=(seen + 3) // 4, output_tokens=_estimate_tokens(output)),
        )
