"""The conversation model: messages, their parts, tool calls and token usage.

These types are the durable record of a session. They travel in workflow history
(as step results), in activity parameters (as the transcript a model sees) and to
clients (as `history()`), so they are plain pydantic data with no behaviour that
touches the outside world, safe to import inside Temporal's workflow sandbox.

Parts follow the shape of the AI SDK's UI message parts (text, reasoning, tool
calls with a state machine, files, `data-*` parts) so that a front end can render
history and live stream the same way; `sessionflow.ui_messages` writes them out as
the AI SDK's `UIMessage` exactly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag


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


# What a file part may carry once decoded (checked where messages come in). Files travel
# by reference (Temporal's external payload store), so they may be larger than a
# message's text: each at most MAX_FILE_BYTES (Anthropic's own limit for an image),
# all the files of one message together at most MAX_MESSAGE_FILE_BYTES.
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_MESSAGE_FILE_BYTES = 10 * 1024 * 1024


class FilePart(_Part):
    """A file the user attached, as the AI SDK's file part: an image, a PDF, a text file.

    `url` is a base64 `data:` URL (the file itself) or an `https://` URL (a reference
    the model fetches). Sizes and schemes are checked where messages come in
    (`sessionflow.client.inputs`); which media types a model takes is its provider's
    call."""

    type: Literal["file"] = "file"
    media_type: str
    url: str
    filename: str | None = None


class DataPart(_Part):
    """App data the AI SDK calls a `data-<name>` part. It is kept with the message (a
    front end renders it) but never shown to the model, as the AI SDK's own
    `convertToModelMessages` leaves data parts out."""

    type: Annotated[str, StringConstraints(pattern=r"^data-[A-Za-z0-9_.-]{1,64}$")]
    id: str | None = None
    data: Any = None


def _part_kind(value: Any) -> str | None:
    """The union's tag: the part's `type`, with every `data-<name>` as `data`."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    return "data" if kind.startswith("data-") else kind


PART_TYPES = "text, reasoning, step-start, tool, file or data-<name>"
Part = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ReasoningPart, Tag("reasoning")]
    | Annotated[StepStartPart, Tag("step-start")]
    | Annotated[ToolPart, Tag("tool")]
    | Annotated[FilePart, Tag("file")]
    | Annotated[DataPart, Tag("data")],
    Discriminator(
        _part_kind,
        custom_error_type="part_type",
        custom_error_message=f"a part's type is one of {PART_TYPES}",
    ),
]


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

    def file_parts(self) -> list[FilePart]:
        return [p for p in self.parts if isinstance(p, FilePart)]

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
    """Token counts, as providers report them, and what they cost.

    `input_tokens` is the prompt less what the cache served or took in (as Anthropic
    counts it; the OpenAI-compatible provider counts the same way), so the four counts
    never overlap. `cost` is in US dollars at the model's price (`sessionflow.prices`),
    None when the model has no known price: unknown, never 0.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost: float | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost=_add_costs(self, other),
        )

    @property
    def total_input_tokens(self) -> int:
        """Every prompt token: uncached input, cache writes and cache reads."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    @property
    def total_tokens(self) -> int:
        """Every token, cache reads and writes included."""
        return self.total_input_tokens + self.output_tokens

    def known_cost(self) -> float | None:
        """The cost, where usage with no tokens at all costs 0 even unpriced."""
        if self.cost is None and self.total_tokens == 0:
            return 0.0
        return self.cost


def _add_costs(a: Usage, b: Usage) -> float | None:
    """A sum is only as known as its parts: unknown if either part (with tokens) is."""
    first, second = a.known_cost(), b.known_cost()
    if first is None or second is None:
        return None
    return first + second
