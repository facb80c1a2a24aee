"""What a model provider receives and the events it streams back.

Providers translate one vendor's API into a small, neutral vocabulary of events;
turning those into UI message chunks and message parts happens once, in the
model-step activity, for every provider alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from sessionflow.contract import FinishReason
from sessionflow.messages import Message, Usage


class ToolSpec(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class ModelRequest(BaseModel):
    """One model step's input: everything the model sees."""

    model: str
    system: str | None
    messages: list[Message]
    tools: list[ToolSpec]
    attempt: int = 1
    # The most tokens the step may write (the agent's `max_output_tokens`); None: the
    # provider's own default. Every built-in provider sends a limit.
    max_output_tokens: int | None = None
    # "compaction": a summarising step of the runtime's own (`sessionflow.compaction`);
    # the messages are one user message holding the transcript to summarise.
    purpose: Literal["step", "compaction"] = "step"


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ReasoningSignature:
    """The provider's signature over the reasoning block just streamed."""

    signature: str


@dataclass(frozen=True)
class ToolCallStart:
    tool_call_id: str
    tool_name: str


@dataclass(frozen=True)
class ToolCallDelta:
    tool_call_id: str
    json_delta: str


@dataclass(frozen=True)
class ToolCallReady:
    tool_call_id: str
    tool_name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class StepFinished:
    reason: FinishReason
    usage: Usage


ModelEvent = (
    TextDelta
    | ReasoningDelta
    | ReasoningSignature
    | ToolCallStart
    | ToolCallDelta
    | ToolCallReady
    | StepFinished
)


class ModelProvider(Protocol):
    """Streams one model step. Errors are raised as `sessionflow.errors` types."""

    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...
