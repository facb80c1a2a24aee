"""What crosses the workflow boundary: inputs, signals, updates, activity parameters.

Each workflow and activity takes one typed object, so fields can be added with
defaults without breaking sessions that are already running. Everything here is
plain data; the module does no I/O and is safe inside the workflow sandbox.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from sessionflow.messages import Message, Part, ToolCall, Usage

WORKFLOW_NAME = "SessionWorkflow"
# What an interrupted turn and an interrupted tool call say, in history and the stream.
INTERRUPTED_TEXT = "interrupted by the user"
# What the model is told of a call that may or may not have acted (a tool that must not
# run twice, whose worker was lost): it is not run again.
OUTCOME_UNKNOWN_TEXT = (
    "outcome unknown: the worker running this call was lost, and the tool must not run "
    "twice, so it was not run again; check its effect before calling it again"
)


class ActivityName(StrEnum):
    """Stable activity type names: one naming scheme, shared by worker and workflow."""

    MODEL_STEP = "sessionflow.model_step"
    RUN_TOOL = "sessionflow.run_tool"
    ENSURE_SANDBOX = "sessionflow.ensure_sandbox"
    SANDBOX_EXEC = "sessionflow.sandbox_exec"
    SANDBOX_STATUS = "sessionflow.sandbox_status"
    SANDBOX_PAUSE = "sessionflow.sandbox_pause"
    SANDBOX_KILL = "sessionflow.sandbox_kill"
    PUBLISH = "sessionflow.publish"
    FORGET_CONTEXT = "sessionflow.forget_context"
    COMMIT_TRANSCRIPT = "sessionflow.commit_transcript"
    REWIND_TRANSCRIPT = "sessionflow.rewind_transcript"
    FORGET_STREAM = "sessionflow.forget_stream"
    ERASE_SESSION = "sessionflow.erase_session"


class SessionStatus(StrEnum):
    """What a session is doing, in the words the UI and search attributes use."""

    IDLE = "idle"
    STREAMING = "streaming"
    RUNNING_TOOL = "running-tool"
    NEEDS_APPROVAL = "needs-approval"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class TurnStatus(StrEnum):
    """How a turn ended."""

    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    # The turn ran `max_steps_per_turn` model steps and was stopped there: the answer
    # may be cut off (a `data-notice` part in it says so).
    STEP_LIMIT = "step_limit"


class FinishReason(StrEnum):
    """Why a model step stopped, in the AI SDK's vocabulary."""

    STOP = "stop"
    TOOL_CALLS = "tool-calls"
    LENGTH = "length"
    CONTENT_FILTER = "content-filter"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    OTHER = "other"


class SessionLimits(BaseModel):
    """Bounds that keep one session's history and turns finite."""

    # At least one step: a turn with no model step could not end (it failed every
    # workflow task before this was checked where limits are made).
    max_steps_per_turn: int = Field(default=32, ge=1)
    # Continue-as-new once history passes either bound, or when Temporal suggests it.
    continue_as_new_after_events: int = 8_000
    continue_as_new_after_bytes: int = 16 * 1024 * 1024
    # Turn outcomes remembered so `done` can be answered after the fact.
    remembered_outcomes: int = 256
    # Per-step usage records kept (totals are kept forever).
    remembered_step_usage: int = 1000
    # Commit messages to the transcript store once the uncommitted ones reach this size
    # (activity inputs then carry at most about this much of the transcript).
    commit_transcript_after_bytes: int = 16 * 1024
    # Pause the session's sandbox after this long without a message (None: never).
    pause_sandbox_after_seconds: float | None = 300.0
    # Close the session after this long without a message (None: never), as `close`
    # does. The client sets it at start from the agent's `idle_ttl`, else from
    # SESSIONFLOW_IDLE_TTL; None here, so runs started before it never expire.
    close_after_idle_seconds: float | None = Field(default=None, gt=0)


class ActivitySettings(BaseModel):
    """Timeouts and retries for one kind of activity, set per agent or per tool.

    Unset fields keep the defaults of `sessionflow.workflows.policies`; settings layer
    as defaults, then the agent's, then the tool's (as pydantic-ai's Temporal
    integration layers them per model and per tool).
    """

    start_to_close: timedelta | None = None
    heartbeat: timedelta | None = None
    max_attempts: int | None = Field(default=None, ge=1)
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None

    def merged(self, override: ActivitySettings | None) -> ActivitySettings:
        """These settings with every field `override` sets replaced."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class LastPart(BaseModel):
    """The part of a streaming answer a client showed last: its index among the
    answer's parts (as the AI SDK builds them from the stream) and its content as shown.
    An interrupt carrying it cuts the answer there, so history holds what the user saw.
    """

    index: int = Field(ge=0)
    part: dict[str, Any]


class SendRequest(BaseModel):
    """Payload of the `send` signal: one user message and the id its answer will carry.

    `context_ref` names transient context kept in Redis, never the context itself.
    """

    message: Message
    assistant_message_id: str
    context_ref: str | None = None
    sandbox_id: str | None = None
    interrupt: bool = False
    # With `interrupt`: where to cut the interrupted answer (None: keep all of it).
    last_part: LastPart | None = None


class ApprovalResponse(BaseModel):
    """Payload of the `approve` update: a person's answer to a tool approval request."""

    approval_id: str
    approved: bool
    reason: str | None = None


class SessionUpdate(BaseModel):
    """Payload of the `update` update: point the session at another sandbox, or rewind."""

    sandbox_id: str | None = None
    last_message_id: str | None = None
    # A new cap on model steps per turn, from the next turn on.
    max_steps_per_turn: int | None = Field(default=None, ge=1)


class ExecRequest(BaseModel):
    command: str
    args: list[str] | None = None
    cwd: str | None = None
    timeout: float | None = None


class SandboxStatus(StrEnum):
    """What a sandbox backend says of a sandbox."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class ExecResult(BaseModel):
    """What a finished command produced. A non-zero exit code is a result, not an error."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_ms: int = 0


class TurnOutcome(BaseModel):
    message_id: str
    status: TurnStatus
    error: str | None = None
    # The failure's error class name, e.g. "AgentNotRegistered" or "ModelUnavailable".
    error_type: str | None = None

    def __bool__(self) -> bool:
        """True only when the turn finished (not interrupted, not failed)."""
        return self.status is TurnStatus.FINISHED

    def raise_for_failure(self) -> TurnOutcome:
        """Raise the `sessionflow.errors` class named by `error_type` if the turn failed."""
        if self.status is not TurnStatus.FAILED:
            return self
        from sessionflow import errors

        cls = errors.by_type(self.error_type) or errors.TurnFailed
        raise cls(self.error or "the turn failed")


class StepUsage(BaseModel):
    message_id: str
    step: int
    model: str
    usage: Usage


class UsageReport(BaseModel):
    """Token use per step (most recent steps), and totals overall and by model."""

    total: Usage = Field(default_factory=Usage)
    by_model: dict[str, Usage] = Field(default_factory=dict)
    steps: list[StepUsage] = Field(default_factory=list)

    def add(self, record: StepUsage, keep_steps: int) -> None:
        self.total = self.total + record.usage
        self.by_model[record.model] = self.by_model.get(record.model, Usage()) + record.usage
        self.steps.append(record)
        del self.steps[:-keep_steps]


class TranscriptRef(BaseModel):
    """Where a session's committed messages are: the newest segment of its transcript
    in the payload store (`sessionflow.storage.transcripts`), which names the rest."""

    driver: str
    claim: dict[str, str]
    # Messages the transcript holds up to and including this segment.
    messages: int
    # The id of its last message: a next fragment with this id continues that message.
    last_id: str

    def key(self) -> str:
        """A stable name for the segment (claims are small string maps)."""
        return self.driver + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.claim.items()))


class TranscriptView(BaseModel):
    """What the `transcript` query answers: enough for a client to read any page."""

    transcript: TranscriptRef | None
    # Fragments not committed yet, oldest first (they follow the transcript).
    tail: list[Message]
    message_count: int


class CommitTranscriptParams(BaseModel):
    workflow_id: str
    head: TranscriptRef | None
    fragments: list[Message]


class RewindTranscriptParams(BaseModel):
    workflow_id: str
    head: TranscriptRef
    last_message_id: str


class SessionSnapshot(BaseModel):
    """Everything a session carries across continue-as-new."""

    # The committed transcript, and the fragments after it (from sessions older than
    # the transcript store: every message).
    transcript: TranscriptRef | None = None
    messages: list[Message] = Field(default_factory=list)
    inbox: list[SendRequest] = Field(default_factory=list)
    usage: UsageReport = Field(default_factory=UsageReport)
    outcomes: list[TurnOutcome] = Field(default_factory=list)
    sandbox_id: str | None = None
    state: dict[str, Any] | None = None
    model_activity: ActivitySettings | None = None
    # How many runs came before this one (continue-as-new count).
    runs: int = 0


class SessionEnd(StrEnum):
    """Why a session ended: what its stream's last chunk (`data-session-end`) says."""

    CLOSED = "closed"
    EXPIRED = "expired"
    DELETED = "deleted"


class EraseOrder(BaseModel):
    """What a run started only to erase a session that has already ended needs: the
    sandbox the ended run held (found by querying it), if any."""

    sandbox_id: str | None = None


class SessionInput(BaseModel):
    session_id: str
    agent: str
    limits: SessionLimits = Field(default_factory=SessionLimits)
    snapshot: SessionSnapshot | None = None
    # Upsert the Session* search attributes (they must be registered in the namespace).
    search_attributes: bool = True
    # Set: this run erases the session (whose run has ended) and completes.
    erase: EraseOrder | None = None


class SessionInfo(BaseModel):
    """What the `info` query answers: a cheap look at a session without its transcript."""

    session_id: str
    agent: str
    status: SessionStatus
    busy: bool
    queued: int
    message_count: int
    usage: Usage
    sandbox_id: str | None
    pending_approvals: list[str]
    run_count: int = 1


class StepRef(BaseModel):
    """Identifies where in a session an activity's stream output belongs."""

    workflow_id: str
    session_id: str
    agent: str
    message_id: str
    step: int


class ModelStepParams(BaseModel):
    """A model step's input. The transcript is `transcript` (by reference) followed by
    `messages`, the fragments not committed yet; histories from before the transcript
    store have no reference and every message here."""

    ref: StepRef
    messages: list[Message]
    transcript: TranscriptRef | None = None
    sandbox_id: str | None = None
    state: dict[str, Any] | None = None
    context_ref: str | None = None


class ModelStepResult(BaseModel):
    parts: list[Part]
    tool_calls: list[ToolCall]
    usage: Usage
    model: str
    finish_reason: FinishReason
    # One flag per tool call: whether a person must approve it first.
    needs_approval: list[bool] = Field(default_factory=list)
    # One entry per tool call: why the runtime will not run it (a tool not offered in
    # this step, an approval rule that failed), told to the model as the call's error;
    # None where it may run. Empty in results recorded before it existed.
    refused: list[str | None] = Field(default_factory=list)
    # The agent's initial state, when the session had none yet.
    state: dict[str, Any] | None = None
    # Activity settings of each tool call (agent's, then tool's), aligned with tool_calls.
    tool_activity: list[ActivitySettings | None] = Field(default_factory=list)
    # One flag per tool call: whether its tool works in the session's sandbox (made
    # before the first such call runs). Empty in results recorded before it existed:
    # then every call had the sandbox made for it.
    uses_sandbox: list[bool] = Field(default_factory=list)
    # The agent's settings for its model steps, used from the session's next step on.
    model_activity: ActivitySettings | None = None


class RunToolParams(BaseModel):
    ref: StepRef
    call: ToolCall
    sandbox_id: str | None
    # The transcript as the model step that asked for this call saw it.
    messages: list[Message]
    transcript: TranscriptRef | None = None
    state: dict[str, Any] | None = None
    context_ref: str | None = None


class RunToolResult(BaseModel):
    output: Any = None
    error_text: str | None = None
    state: dict[str, Any] | None = None
    interrupted: bool = False


class EnsureSandboxParams(BaseModel):
    ref: StepRef
    sandbox_id: str | None
    # Fail with SandboxNotFound instead of creating a new sandbox.
    must_exist: bool = False


class SandboxExecParams(BaseModel):
    ref: StepRef
    sandbox_id: str
    request: ExecRequest


class SandboxRef(BaseModel):
    sandbox_id: str


class ForgetContextParams(BaseModel):
    """A turn has ended: its transient context is deleted from Redis."""

    workflow_id: str
    context_ref: str


class EndStreamParams(BaseModel):
    """A session has ended: its stream gets a last chunk, then its Redis keys go."""

    workflow_id: str
    session_id: str
    agent: str
    reason: SessionEnd


class EraseSessionParams(BaseModel):
    """A session is being deleted: its Redis keys and payload store objects go."""

    workflow_id: str
    session_id: str
    agent: str


class PublishParams(BaseModel):
    """Chunks that the workflow itself decides on (finish after a step limit, errors)."""

    ref: StepRef
    chunks: list[dict[str, Any]]
