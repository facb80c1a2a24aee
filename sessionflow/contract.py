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

from sessionflow.budgets import Budget, BudgetReached, Spent
from sessionflow.compaction import CompactionRecord
from sessionflow.messages import Message, Part, ToolCall, Usage

WORKFLOW_NAME = "SessionWorkflow"
# The function a tracing worker lends the workflow for a turn's span (`sessionflow.tracing`).
TURN_SPAN = "__sessionflow_turn_span"
# What an interrupted turn and an interrupted tool call say, in history and the stream.
INTERRUPTED_TEXT = "interrupted by the user"
# The abort reason of a turn a send with if_busy="rollback" took out of history.
ROLLED_BACK_TEXT = "rolled back: a new message replaced this turn"
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
    FORK_TRANSCRIPT = "sessionflow.fork_transcript"
    FORGET_STREAM = "sessionflow.forget_stream"
    ERASE_SESSION = "sessionflow.erase_session"
    ANNOUNCE_INTERRUPT = "sessionflow.announce_interrupt"
    COMPACT = "sessionflow.compact"
    DELIVER_WEBHOOK = "sessionflow.deliver_webhook"
    SCHEDULED_SEND = "sessionflow.scheduled_send"


class SessionStatus(StrEnum):
    """What a session is doing, in the words the UI and search attributes use."""

    IDLE = "idle"
    STREAMING = "streaming"
    RUNNING_TOOL = "running-tool"
    NEEDS_APPROVAL = "needs-approval"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    # Reported by the client only (`Session.info()`), never by a running session: its
    # run completed (closed), or ended otherwise (terminated, failed, timed out;
    # `SessionInfo.ended` says how).
    CLOSED = "closed"
    ENDED = "ended"


class TurnStatus(StrEnum):
    """How a turn ended."""

    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    # The turn ran `max_steps_per_turn` model steps and was stopped there: the answer
    # may be cut off (a `data-notice` part in it says so).
    STEP_LIMIT = "step_limit"
    # A session or turn budget (tokens or cost) was reached before a model step: the
    # answer may be cut off (a `data-notice` part in it says which budget).
    BUDGET_EXCEEDED = "budget_exceeded"
    # A send with `if_busy="rollback"` stopped the turn and took it out of history (its
    # user message and answer), as if it never happened.
    ROLLED_BACK = "rolled_back"


class IfBusy(StrEnum):
    """What a send does when it arrives while a turn runs (or messages wait)."""

    # Queue the message; it is answered after the messages before it (the default).
    ENQUEUE = "enqueue"
    # Refuse it at once (`TurnRunning`, HTTP 409); nothing is queued.
    REJECT = "reject"
    # Stop the running turn (its partial answer is kept, interrupted), then answer.
    INTERRUPT = "interrupt"
    # Stop the running turn and take it out of history, then answer.
    ROLLBACK = "rollback"


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
    # Move to the deployment's current build at continue-as-new (a message that finds
    # the session pinned to an older build continues it as new first): opted in by the
    # agent's `upgrade_on_new_build`, else SESSIONFLOW_UPGRADE_ON_NEW_BUILD; off here, so
    # runs started before it stay pinned (`sessionflow.workflows.upgrade`).
    upgrade_on_new_build: bool = False
    # The session's own budget over its agent's, limit by limit
    # (`sessionflow.budgets.overridden`): set by the operator's `update(session_budget=)`
    # (the Python client and the CLI; not over HTTP, where the tenants are), e.g. to
    # let a session whose budget is spent go on.
    session_budget: Budget | None = None


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
    # This turn's budget, tightening the agent's `turn_budget` (sessionflow.budgets).
    budget: Budget | None = None
    # What to do if a turn runs when the message arrives (`interrupt` above is the
    # reference API's spelling of `IfBusy.INTERRUPT`); decided by the session.
    if_busy: IfBusy = IfBusy.ENQUEUE
    # The session's webhook URL from this message on ("" turns the agent's off; None
    # leaves it as it is; see `sessionflow.webhooks`).
    webhook_url: str | None = None


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
    # The session's webhook URL ("" turns the agent's off; None leaves it as it is).
    webhook_url: str | None = None
    # The session's own budget over its agent's, limit by limit; None leaves it as it is.
    session_budget: Budget | None = None


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


class TurnUsage(BaseModel):
    """What one turn used: its answer's id, its model steps and their usage summed."""

    message_id: str
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)


class UsageReport(BaseModel):
    """Token use and cost per step (most recent steps) and per turn (most recent
    turns), and totals overall and by model. A cost is None where a model had no price."""

    total: Usage = Field(default_factory=Usage)
    by_model: dict[str, Usage] = Field(default_factory=dict)
    steps: list[StepUsage] = Field(default_factory=list)
    turns: list[TurnUsage] = Field(default_factory=list)

    def add(self, record: StepUsage, keep_steps: int, keep_turns: int = 256) -> None:
        self.total = self.total + record.usage
        self.by_model[record.model] = self.by_model.get(record.model, Usage()) + record.usage
        self.steps.append(record)
        del self.steps[:-keep_steps]
        if not self.turns or self.turns[-1].message_id != record.message_id:
            self.turns.append(TurnUsage(message_id=record.message_id))
        turn = self.turns[-1]
        turn.steps += 1
        turn.usage = turn.usage + record.usage
        del self.turns[:-keep_turns]

    def spent(self) -> Spent:
        """The session's use as a budget counts it (costs of unpriced models left out)."""
        spent = Spent()
        for usage in self.by_model.values():
            spent = spent.add(usage)
        return spent


class TranscriptRef(BaseModel):
    """Where a session's committed messages are: the newest segment of its transcript
    in the payload store (`sessionflow.storage.transcripts`), which names the rest."""

    driver: str
    claim: dict[str, str]
    # Messages the transcript holds up to and including this segment.
    messages: int
    # The id of its last message: a next fragment with this id continues that message.
    last_id: str
    # Only the segment's first `keep` fragments belong to this transcript (None: all):
    # a fork at an earlier message refers to the segment that holds it, cut there,
    # without writing anything.
    keep: int | None = None

    def key(self) -> str:
        """A stable name for the segment (claims are small string maps)."""
        return self.driver + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.claim.items()))


class ForkTranscriptParams(BaseModel):
    """Hold the session's transcript for a fork, and find the fork's end in it."""

    # The session forked (whose namespace, and those it borrows, the fork holds).
    workflow_id: str
    # The fork's workflow id.
    fork_workflow_id: str
    head: TranscriptRef
    # Cut the transcript after this message (None: keep it all).
    last_message_id: str | None = None
    # Place the fork's holds (the last call for a fork, once it is known to go ahead).
    hold: bool = True


class ForkRequest(BaseModel):
    """Payload of the `fork` update: where the new session's history ends."""

    fork_workflow_id: str
    # The last message the fork keeps (None: the newest).
    at_message_id: str | None = None


class TranscriptView(BaseModel):
    """What the `transcript` query answers: enough for a client to read any page."""

    transcript: TranscriptRef | None
    # Fragments not committed yet, oldest first (they follow the transcript).
    tail: list[Message]
    message_count: int


# The most messages one page of the `messages` query holds.
MAX_PAGE_MESSAGES = 200


class PageRequest(BaseModel):
    """Which messages the `messages` query answers: `limit` of them from `offset`."""

    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_MESSAGES)


class MessagePage(BaseModel):
    """One page of a session's messages, as the `messages` query answers it.

    A query cannot read the payload store, so messages already committed to the
    transcript store are not in the answer: `complete` is then False, and `transcript`
    and `tail` say where the page is. The codec server (`sessionflow codec-server`,
    `gateway.codec`) reads them as it decodes the answer for the Temporal UI or CLI,
    and fills `messages`; the Python client reads pages with `Session.history`.
    """

    offset: int
    limit: int
    total: int
    messages: list[Message] = Field(default_factory=list)
    complete: bool = True
    transcript: TranscriptRef | None = None
    tail: list[Message] = Field(default_factory=list)


class CommitTranscriptParams(BaseModel):
    workflow_id: str
    head: TranscriptRef | None
    fragments: list[Message]


class RewindTranscriptParams(BaseModel):
    workflow_id: str
    head: TranscriptRef
    last_message_id: str


class WebhookTargets(BaseModel):
    """Where a session's events go: the agent's URL (as last learned) and the session's
    own, which wins when set ("" for none)."""

    agent_url: str | None = None
    session_url: str | None = None

    def url(self) -> str | None:
        chosen = self.session_url if self.session_url is not None else self.agent_url
        return chosen or None


class WebhookEventType(StrEnum):
    TURN_FINISHED = "turn.finished"
    APPROVAL_REQUESTED = "approval.requested"
    SESSION_ENDED = "session.ended"


class WebhookEvent(BaseModel):
    """One event for a session's webhook, fixed by the workflow: every retry of its
    delivery sends the same body (`sessionflow.webhooks.event_body`)."""

    id: str
    type: WebhookEventType
    # The session as its owner names it (without the tenant's prefix).
    session_id: str
    outcome: str | None = None
    assistant_message_id: str | None = None
    usage: Usage = Field(default_factory=Usage)
    created_at: str


class WebhookDelivery(BaseModel):
    """Input of `WebhookDeliveryWorkflow` and of the delivery activity."""

    url: str
    event: WebhookEvent
    # The full session id (`<tenant>:<id>`): which tenant's secret signs it.
    session_id: str
    agent: str


class ScheduledSend(BaseModel):
    """Input of `ScheduledSendWorkflow` (a schedule's action) and of its activity."""

    session_id: str
    agent: str
    schedule: str
    message: str
    if_busy: IfBusy = IfBusy.ENQUEUE


class ScheduledSendResult(BaseModel):
    # None: not sent, the session was in a turn and the schedule's if_busy is reject.
    assistant_message_id: str | None


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
    # The compactions in force, newest last (`sessionflow.compaction`).
    compactions: list[CompactionRecord] = Field(default_factory=list)
    # The agent state as of recent messages (`workflows.forks`): a fork takes it.
    states: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    # Where the session's events go (`workflows.webhooks.Webhooks`).
    webhooks: WebhookTargets | None = None
    # The session's status as the run ended (`interrupted` after a cancel request).
    status: SessionStatus = SessionStatus.IDLE


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
    # The agent's webhook URL, when the client starting the session knows the agent
    # (the workers say it again with every model step).
    agent_webhook_url: str | None = None


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
    # None while the session runs; else how its run ended, from Temporal: `closed`, or
    # `terminated: <reason> (by <who>)`, `failed: ...`, `timed out: ...` (`status` is
    # then `closed` or `ended`, and the rest is what the run held as it ended).
    ended: str | None = None


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
    # What the session and the turn have spent before this step, and the send's own
    # budget for the turn: the step checks them against the agent's budgets.
    session_spent: Spent = Field(default_factory=Spent)
    turn_spent: Spent = Field(default_factory=Spent)
    turn_budget: Budget | None = None
    # The session's own budget over its agent's (`SessionLimits.session_budget`).
    session_budget: Budget | None = None
    # How the conversation is sent (None: as it is); see `sessionflow.compaction`.
    compaction: CompactionRecord | None = None
    # The answer's `start` chunk is in the stream already (the workflow published
    # something of it first, a compaction's start).
    started: bool = False


class CompactParams(BaseModel):
    """The summarising step's input: the transcript (as a model step's) and the
    compaction the model step proposed, whose summary it writes."""

    ref: StepRef
    messages: list[Message]
    transcript: TranscriptRef | None = None
    state: dict[str, Any] | None = None
    context_ref: str | None = None
    current: CompactionRecord | None = None
    proposal: CompactionRecord


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
    # Set when a budget was reached before the step: the model was not called, and
    # the turn ends `budget_exceeded`.
    budget_reached: BudgetReached | None = None
    # Set instead of an answer: the request would pass the agent's compaction threshold,
    # and this is the compaction to make first (the model was not called).
    compact: CompactionRecord | None = None
    # The agent's webhook URL (`agent(..., webhook_url=...)`), as the worker knows it.
    webhook_url: str | None = None


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
