"""Request and response bodies of the REST API (they make up /openapi.json).

Field names are the AI SDK's and the reference Sessions API's camelCase
(`interruptIfStreaming`, `assistantMessageId`, ...), in requests and answers alike;
requests may still spell them in snake_case, as the first version of this API did.
The Python names stay snake_case.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.alias_generators import to_camel

from sessionflow.messages import MAX_FILE_BYTES, MAX_MESSAGE_FILE_BYTES

_CAMEL = ConfigDict(
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
)


class _Model(BaseModel):
    model_config = _CAMEL


class _Body(_Model):
    model_config = ConfigDict(**_CAMEL, extra="forbid")


class BudgetBody(_Body):
    """Limits on one turn's model use; it can only tighten the agent's turn budget."""

    input_tokens: int | None = Field(
        default=None, ge=1, description="Prompt tokens, cache reads and writes included."
    )
    output_tokens: int | None = Field(default=None, ge=1)
    cost: float | None = Field(
        default=None, gt=0, description="US dollars, at the worker's model prices."
    )


class SendBody(_Body):
    message: str | dict[str, Any] | list[dict[str, Any]] = Field(
        description="Text, a UI message {role: 'user', parts}, or a list of parts. Parts: "
        "{type: 'text', text}, {type: 'file', mediaType, url, filename?} (url a base64 "
        f"data: URL of at most {MAX_FILE_BYTES} bytes decoded, "
        f"{MAX_MESSAGE_FILE_BYTES} for all files of a message, or an https:// URL), "
        "{type: 'data-<name>', id?, data} (kept in history, never shown to the model)."
    )
    interrupt_if_streaming: bool | dict[str, Any] = Field(
        default=False,
        description="true: interrupt the answer being streamed first; {lastPart: {index, "
        "part}}: also say which part of it the user saw last (index among the answer's "
        "parts, content as shown), and the interrupted answer is cut there.",
    )
    context: dict[str, Any] | None = Field(
        default=None, description="Transient context; validated, never persisted."
    )
    sandbox_id: str | None = None
    budget: BudgetBody | None = Field(
        default=None,
        description="This turn's budget; reaching it ends the turn as `budget_exceeded`.",
    )
    if_busy: Literal["enqueue", "reject", "interrupt", "rollback"] | None = Field(
        default=None,
        description="What to do if a turn runs (or messages wait): 'enqueue' (the "
        "default: answered in order), 'reject' (409 turn_running, nothing queued), "
        "'interrupt' (as interruptIfStreaming: true) or 'rollback' (the running turn is "
        "stopped and taken out of history, then this message runs).",
    )
    webhook_url: str | None = Field(
        default=None,
        description="The session's webhook URL from this message on, instead of its "
        "agent's ('' for none).",
    )


class SendResponse(_Model):
    assistant_message_id: str


class OutcomeResponse(_Model):
    """How an answer ended; `done` is False (and the rest None) while it goes on."""

    message_id: str
    done: bool
    status: (
        Literal["finished", "step_limit", "budget_exceeded", "interrupted", "rolled_back", "failed"]
        | None
    ) = None
    error: str | None = None
    error_type: str | None = None


class ApprovalBody(_Body):
    approval_id: str
    approved: bool
    reason: str | None = None


class UpdateBody(_Body):
    sandbox_id: str | None = None
    last_message_id: str | None = None
    max_steps_per_turn: int | None = Field(default=None, ge=1)
    webhook_url: str | None = Field(
        default=None,
        description="The session's webhook URL instead of its agent's ('' for none); "
        "changed alone, it applies at once, even while a turn runs.",
    )


class ForkBody(_Body):
    new_id: str = Field(min_length=1, description="The fork's session id (the tenant's).")
    at_message_id: str | None = Field(
        default=None, description="The last message the fork keeps; default the newest."
    )


class ForkResponse(_Model):
    session_id: str


class HistoryResponse(_Model):
    messages: list[dict[str, Any]] = Field(
        description="AI SDK UIMessage objects, oldest first: {id, role, parts, metadata?}; "
        "an assistant message's metadata holds its status (streaming, complete, "
        "interrupted, failed) and, when it failed, the error."
    )
    offset: int
    count: int


class TokenUsage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost: float | None = Field(
        default=None, description="US dollars; null when the model has no known price."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """Every token, cache reads and writes included."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class StepUsageBody(_Model):
    message_id: str
    step: int
    model: str
    usage: TokenUsage


class TurnUsageBody(_Model):
    message_id: str
    steps: int
    usage: TokenUsage


class UsageResponse(_Model):
    """Token use and cost per step and per turn (the most recent ones), in total and by
    model."""

    total: TokenUsage
    by_model: dict[str, TokenUsage]
    steps: list[StepUsageBody]
    turns: list[TurnUsageBody]


class InfoResponse(_Model):
    """A cheap look at one session, without its messages."""

    session_id: str
    agent: str
    status: str
    busy: bool
    queued: int
    message_count: int
    usage: TokenUsage
    sandbox_id: str | None = Field(description="The session's sandbox (VibeKit's getSession)")
    pending_approvals: list[str]


class SessionRow(_Model):
    session_id: str
    agent: str
    status: str
    tokens: int
    pending_approvals: int
    last_activity: str | None
    ui_url: str = Field(description="The session's workflow in the Temporal UI")


class SessionsResponse(_Model):
    sessions: list[SessionRow]


class ChatRequest(_Model):
    """The body the AI SDK's DefaultChatTransport posts."""

    model_config = ConfigDict(**_CAMEL, extra="allow")

    id: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = None
    # What `sendMessage(message, {body: {...}})` adds, as POST .../messages takes it.
    context: dict[str, Any] | None = Field(
        default=None, description="Transient context; validated, never persisted."
    )
    budget: BudgetBody | None = Field(
        default=None,
        description="This turn's budget; reaching it ends the turn as `budget_exceeded`.",
    )


class ScheduleBody(_Body):
    message: str = Field(description="The text sent to the session each time.")
    every: float | str | None = Field(
        default=None, description="An interval: seconds, or text like '90s', '15m', '1h', '1d'."
    )
    cron: str | None = Field(default=None, description="A cron expression (UTC); or `every`.")
    name: str | None = Field(
        default=None, description="The schedule's name in the session (default: a new one)."
    )
    if_busy: Literal["enqueue", "reject", "interrupt", "rollback"] = Field(
        default="enqueue",
        description="What a firing does while a turn runs: enqueue (answered after it) or "
        "interrupt (stops it first); reject and rollback queue like enqueue for now.",
    )
    paused: bool = False


class ScheduleResponse(_Model):
    name: str
    session_id: str
    agent: str
    message: str
    every: float | None
    cron: str | None
    if_busy: str
    paused: bool
    note: str | None
    next_runs: list[str]
    last_run: str | None


class SchedulesResponse(_Model):
    schedules: list[ScheduleResponse]
