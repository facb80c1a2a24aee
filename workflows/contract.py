"""What crosses the workflow boundary: inputs, signals, updates, activity parameters.

Each workflow and activity takes one typed object, so fields can be added with
defaults without breaking sessions that are already running. Everything here is
plain data; the module does no I/O and is safe inside the workflow sandbox.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from workflows.messages import Message, Part, ToolCall, Usage

WORKFLOW_NAME = "SessionWorkflow"


class ActivityName(StrEnum):
    """Stable activity type names: one naming scheme, shared by worker and workflow."""

    MODEL_STEP = "sessionflow.model_step"
    RUN_TOOL = "sessionflow.run_tool"
    ENSURE_SANDBOX = "sessionflow.ensure_sandbox"
    PUBLISH = "sessionflow.publish"


class TurnStatus(StrEnum):
    """How a turn ended."""

    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class FinishReason(StrEnum):
    """Why a model step stopped, in the AI SDK's vocabulary."""

    STOP = "stop"
    TOOL_CALLS = "tool-calls"
    LENGTH = "length"
    CONTENT_FILTER = "content-filter"
    ERROR = "error"
    OTHER = "other"


class SessionLimits(BaseModel):
    """Bounds that keep one session's history and turns finite."""

    max_steps_per_turn: int = 32
    # Continue-as-new once history passes either bound, or when Temporal suggests it.
    continue_as_new_after_events: int = 8_000
    continue_as_new_after_bytes: int = 16 * 1024 * 1024
    # Turn outcomes remembered so `done` can be answered after the fact.
    remembered_outcomes: int = 256


class SendRequest(BaseModel):
    """Payload of the `send` signal: one user message and the id its answer will carry."""

    message: Message
    assistant_message_id: str


class TurnOutcome(BaseModel):
    message_id: str
    status: TurnStatus
    error: str | None = None


class SessionSnapshot(BaseModel):
    """Everything a session carries across continue-as-new."""

    messages: list[Message] = Field(default_factory=list)
    inbox: list[SendRequest] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    outcomes: list[TurnOutcome] = Field(default_factory=list)
    sandbox_id: str | None = None


class SessionInput(BaseModel):
    session_id: str
    agent: str
    limits: SessionLimits = Field(default_factory=SessionLimits)
    snapshot: SessionSnapshot | None = None


class SessionInfo(BaseModel):
    """What the `info` query answers: a cheap look at a session without its transcript."""

    session_id: str
    agent: str
    busy: bool
    queued: int
    message_count: int
    usage: Usage
    sandbox_id: str | None


class StepRef(BaseModel):
    """Identifies where in a session an activity's stream output belongs."""

    workflow_id: str
    session_id: str
    agent: str
    message_id: str
    step: int


class ModelStepParams(BaseModel):
    ref: StepRef
    messages: list[Message]
    sandbox_id: str | None = None


class ModelStepResult(BaseModel):
    parts: list[Part]
    tool_calls: list[ToolCall]
    usage: Usage
    model: str
    finish_reason: FinishReason


class RunToolParams(BaseModel):
    ref: StepRef
    call: ToolCall
    sandbox_id: str | None
    messages: list[Message]


class RunToolResult(BaseModel):
    output: Any = None
    error_text: str | None = None


class EnsureSandboxParams(BaseModel):
    ref: StepRef
    sandbox_id: str | None


class SandboxRef(BaseModel):
    sandbox_id: str
    created: bool


class PublishParams(BaseModel):
    """Chunks that the workflow itself decides on (finish after a step limit, errors)."""

    ref: StepRef
    chunks: list[dict[str, Any]]
