"""The conversation model: messages, their parts, tool calls and token usage.

These types are the durable record of a session. They travel in workflow history
(as step results), in activity parameters (as the transcript a model sees) and to
clients (as `history()`), so they are plain pydantic data with no behaviour that
touches the outside world, safe to import inside Temporal's workflow sandbox.

Parts follow the shape of the AI SDK's UI message parts (text, reasoning, tool
calls with a state machine) so that a front end can render history and live
stream the same way.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    """How an assistant message ended; user messages are always `complete`."""

    STREAMING = "streaming"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class ToolState(StrEnum):
    """Where a tool call is in its life, as the AI SDK names the states."""

    INPUT_AVAILABLE = "input-available"
    APPROVAL_REQUESTED = "approval-requested"
    OUTPUT_AVAILABLE = "output-available"
    OUTPUT_ERROR = "output-error"
    OUTPUT_DENIED = "output-denied"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Part):
    type: Literal["text"] = "text"
    text: str


class ReasoningPart(_Part):
    type: Literal["reasoning"] = "reasoning"
    text: str
    # Providers that verify reasoning they are shown again (Anthropic) sign it.
    signature: str | None = None


class StepStartPart(_Part):
    """Marks where a model step begins inside an assistant message."""

    type: Literal["step-start"] = "step-start"


class ToolApproval(BaseModel):
    """A request for a person's go-ahead, and their answer once given."""

    id: str
    approved: bool | None = None
    reason: str | None = None


class ToolPart(_Part):
    """One tool call and, once it ran, its outcome."""

    type: Literal["tool"] = "tool"
    tool_call_id: str
    tool_name: str
    input: dict[str, Any]
    state: ToolState = ToolState.INPUT_AVAILABLE
    output: Any = None
    error_text: str | None = None
    approval: ToolApproval | None = None


Part = Annotated[TextPart | ReasoningPart | StepStartPart | ToolPart, Field(discriminator="type")]


class Message(BaseModel):
    """A user or assistant message made of parts."""

    id: str
    role: Role
    parts: list[Part] = Field(default_factory=list)
    status: MessageStatus = MessageStatus.COMPLETE
    metadata: dict[str, Any] | None = None

    def text(self) -> str:
        """All text parts joined; what a terminal shows of the message."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def tool_parts(self) -> list[ToolPart]:
        return [p for p in self.parts if isinstance(p, ToolPart)]

    def step_count(self) -> int:
        return sum(1 for p in self.parts if isinstance(p, StepStartPart))


class ToolCall(BaseModel):
    """A tool call requested by the model in one step."""

    tool_call_id: str
    tool_name: str
    input: dict[str, Any]


class Usage(BaseModel):
    """Token counts, as providers report them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
