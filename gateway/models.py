"""Request and response bodies of the REST API (they make up /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SendBody(_Body):
    message: str | dict[str, Any] | list[dict[str, Any]] = Field(
        description="Text, a UI message {role: 'user', parts}, or a list of parts."
    )
    interrupt_if_streaming: bool = False
    context: dict[str, Any] | None = Field(
        default=None, description="Transient context; validated, never persisted."
    )
    sandbox_id: str | None = None


class SendResponse(BaseModel):
    assistant_message_id: str


class OutcomeResponse(BaseModel):
    """How an answer ended; `done` is False (and the rest None) while it goes on."""

    message_id: str
    done: bool
    status: Literal["finished", "interrupted", "failed"] | None = None
    error: str | None = None
    error_type: str | None = None


class ApprovalBody(_Body):
    approval_id: str
    approved: bool
    reason: str | None = None


class UpdateBody(_Body):
    sandbox_id: str | None = None
    last_message_id: str | None = None


class HistoryResponse(BaseModel):
    messages: list[dict[str, Any]]
    offset: int
    count: int


class ChatRequest(BaseModel):
    """The body the AI SDK's DefaultChatTransport posts."""

    model_config = ConfigDict(extra="allow")

    id: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = Field(default=None, alias="messageId")
