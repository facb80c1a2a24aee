"""UI message chunks: the AI SDK's UI message stream protocol (v1), typed.

Each chunk serialises to exactly the JSON object the AI SDK's `uiMessageChunkSchema`
accepts (camelCase fields, no extras, since that schema is strict). Sessionflow's own
bookkeeping (message id, step, attempt) travels beside the chunk in the Redis entry,
never inside it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel


class Chunk(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
    type: str

    def to_wire(self) -> dict[str, Any]:
        """The chunk as the AI SDK expects it on the wire."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_json(self) -> str:
        """`to_wire()` serialised, without building the intermediate dict."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class StartChunk(Chunk):
    type: Literal["start"] = "start"
    message_id: str | None = None
    message_metadata: Any = None


class FinishChunk(Chunk):
    type: Literal["finish"] = "finish"
    finish_reason: str | None = None
    message_metadata: Any = None


class StartStepChunk(Chunk):
    type: Literal["start-step"] = "start-step"


class FinishStepChunk(Chunk):
    type: Literal["finish-step"] = "finish-step"


class TextStartChunk(Chunk):
    type: Literal["text-start"] = "text-start"
    id: str


class TextDeltaChunk(Chunk):
    type: Literal["text-delta"] = "text-delta"
    id: str
    delta: str


class TextEndChunk(Chunk):
    type: Literal["text-end"] = "text-end"
    id: str


class ReasoningStartChunk(Chunk):
    type: Literal["reasoning-start"] = "reasoning-start"
    id: str


class ReasoningDeltaChunk(Chunk):
    type: Literal["reasoning-delta"] = "reasoning-delta"
    id: str
    delta: str


class ReasoningEndChunk(Chunk):
    type: Literal["reasoning-end"] = "reasoning-end"
    id: str


class ToolInputStartChunk(Chunk):
    type: Literal["tool-input-start"] = "tool-input-start"
    tool_call_id: str
    tool_name: str


class ToolInputDeltaChunk(Chunk):
    type: Literal["tool-input-delta"] = "tool-input-delta"
    tool_call_id: str
    input_text_delta: str


class ToolInputAvailableChunk(Chunk):
    type: Literal["tool-input-available"] = "tool-input-available"
    tool_call_id: str
    tool_name: str
    input: Any


class ToolInputErrorChunk(Chunk):
    type: Literal["tool-input-error"] = "tool-input-error"
    tool_call_id: str
    tool_name: str
    input: Any
    error_text: str


class ToolApprovalRequestChunk(Chunk):
    type: Literal["tool-approval-request"] = "tool-approval-request"
    approval_id: str
    tool_call_id: str


class ToolOutputAvailableChunk(Chunk):
    type: Literal["tool-output-available"] = "tool-output-available"
    tool_call_id: str
    output: Any
    preliminary: bool | None = None


class ToolOutputErrorChunk(Chunk):
    type: Literal["tool-output-error"] = "tool-output-error"
    tool_call_id: str
    error_text: str


class ToolOutputDeniedChunk(Chunk):
    type: Literal["tool-output-denied"] = "tool-output-denied"
    tool_call_id: str


class ErrorChunk(Chunk):
    type: Literal["error"] = "error"
    error_text: str


class AbortChunk(Chunk):
    type: Literal["abort"] = "abort"
    reason: str | None = None


class MessageMetadataChunk(Chunk):
    type: Literal["message-metadata"] = "message-metadata"
    message_metadata: Any


class DataChunk(Chunk):
    """`data-<name>`: application data; `transient` ones are not kept in the message."""

    type: str
    id: str | None = None
    data: Any
    transient: bool | None = None

    @field_validator("type")
    @classmethod
    def _data_prefix(cls, value: str) -> str:
        if not value.startswith("data-") or len(value) == len("data-"):
            raise ValueError(f"data chunk type must look like 'data-<name>', got {value!r}")
        return value


_BY_TYPE: dict[str, type[Chunk]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        StartChunk,
        FinishChunk,
        StartStepChunk,
        FinishStepChunk,
        TextStartChunk,
        TextDeltaChunk,
        TextEndChunk,
        ReasoningStartChunk,
        ReasoningDeltaChunk,
        ReasoningEndChunk,
        ToolInputStartChunk,
        ToolInputDeltaChunk,
        ToolInputAvailableChunk,
        ToolInputErrorChunk,
        ToolApprovalRequestChunk,
        ToolOutputAvailableChunk,
        ToolOutputErrorChunk,
        ToolOutputDeniedChunk,
        ErrorChunk,
        AbortChunk,
        MessageMetadataChunk,
    )
}

# A message's stream ends with one of these.
TERMINAL_TYPES = frozenset({"finish", "abort", "error"})


def parse_chunk(wire: dict[str, Any]) -> Chunk:
    """Build the typed chunk for a wire object; raises `ValueError` on unknown types."""
    kind = wire.get("type")
    if not isinstance(kind, str):
        raise ValueError("chunk has no string 'type'")
    cls = DataChunk if kind.startswith("data-") else _BY_TYPE.get(kind)
    if cls is None:
        raise ValueError(f"unknown chunk type {kind!r}")
    return cls.model_validate(wire)


def status_chunk(status: str, **details: object) -> DataChunk:
    """A transient `data-status` chunk: what the session is doing, for a UI to show but
    not keep in the message.

    Statuses: sandbox-setup, thinking, running-tool, needs-approval, idle.
    """
    return DataChunk(type="data-status", data={"status": status, **details}, transient=True)


def is_approval_status(chunk: Chunk) -> bool:
    """Whether `chunk` is the `data-status` an answer publishes once it has asked for
    approvals: it then waits (for as long as it takes) for a person to answer them."""
    data = getattr(chunk, "data", None)
    return (
        chunk.type == "data-status"
        and isinstance(data, dict)
        and (data.get("status") == "needs-approval")
    )


# The last chunk of a session's stream: the session ended (closed, expired or deleted)
# and its stream is about to be erased. Readers stop after it, following or not.
SESSION_END_TYPE = "data-session-end"


def session_end_chunk(reason: str) -> DataChunk:
    """A transient `data-session-end` chunk saying why the session ended."""
    return DataChunk(type=SESSION_END_TYPE, data={"reason": reason}, transient=True)
