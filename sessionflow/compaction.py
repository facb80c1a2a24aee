"""Keeping what is SENT to the model inside its window, while history keeps every word.

A session's transcript grows without bound; a model's window does not. Before each
model step the model-step activity estimates the request, and when it would pass a
share of the window (`Compaction.threshold`, 0.8 by default) it proposes a compaction
instead of calling the model:

1. **Clear old tool results** (cheap, no model call): the results of every tool call
   but the newest `keep_tool_results` are sent as a short placeholder. Enough when tool
   output is what fills the window.
2. **Summarise**: the oldest turns are replaced by a summary that a model step of our
   own writes (the `compact` activity, retryable like any other). The newest turns that
   fit under `target` are kept word for word.

The workflow records the outcome once (a `CompactionRecord`, carried in workflow state
and across continue-as-new, and a `data-compaction` part in the answer), so a replay or
a retry never summarises again. A record is cumulative and changes only what is sent:
`sent_messages(messages, record)` is the conversation as the model sees it, byte for
byte the same from step to step until the next compaction, so the provider's prompt
cache keeps hitting.

Token counts are estimates, never a tokenizer's: about four characters of the request's
JSON per token (`estimate_tokens`), which is how Anthropic and OpenAI tokenizers fare on
English and code; an image counts as `IMAGE_TOKENS`. The margin below the window
(`threshold`) absorbs the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sessionflow.messages import (
    DataPart,
    FilePart,
    Message,
    Part,
    ReasoningPart,
    Role,
    TextPart,
    ToolPart,
    ToolState,
    Usage,
)

# What an image costs, about (Anthropic: width x height / 750, at most ~1,600).
IMAGE_TOKENS = 1_600
CHARS_PER_TOKEN = 4
# A cleared tool result, as the model sees it.
CLEARED_TEXT = "[tool result cleared to keep the conversation within the model's window]"
# The id and metadata of the message that stands for the summarised turns.
SUMMARY_MESSAGE_ID = "sessionflow-compaction-summary"
# Set in the metadata of an answer whose turn is not sent again (`exclude_turn`).
EXCLUDED_KEY = "excludedFromContext"
SUMMARY_HEADER = "[A summary of the earlier conversation, which no longer fits the window]\n\n"
DEFAULT_INSTRUCTIONS = (
    "You compact a conversation between a user and an AI assistant that uses tools, "
    "because it no longer fits the model's context window. Write a summary the "
    "assistant can continue from: the user's goals and requests, decisions made, facts "
    "learned (file names, commands, results, errors), work done and work still open. "
    "Keep exact identifiers. Write only the summary."
)


class Compaction(BaseModel):
    """How an agent's sessions compact: `agent(..., compaction=Compaction(...))`, or
    `compaction=False` to never compact (a request over the window then fails its turn).

    Attributes:
        threshold: compact before a step whose request would pass this share of the
            model's window.
        target: a compaction aims for a request at most this share of the window, so
            that the next one is many steps away (each compaction changes the prompt's
            prefix, which costs one cache write).
        keep_tool_results: the newest tool results always sent in full.
        clear_tool_results: try clearing old tool results first (no model call).
        summary_model: the model that summarises (`provider/model`); the agent's by
            default.
        instructions: the summariser's system prompt.
        max_summary_tokens: about how long a summary may be (asked of the model, and
            reserved in the window).
    """

    model_config = ConfigDict(frozen=True)

    threshold: float = Field(default=0.8, gt=0, le=1)
    target: float = Field(default=0.5, gt=0, le=1)
    keep_tool_results: int = Field(default=3, ge=0)
    clear_tool_results: bool = True
    summary_model: str | None = None
    instructions: str = DEFAULT_INSTRUCTIONS
    max_summary_tokens: int = Field(default=4_000, ge=100)

    @model_validator(mode="after")
    def _target_below_threshold(self) -> Compaction:
        if self.target > self.threshold:
            raise ValueError(f"target ({self.target}) must not be above threshold")
        return self


class CompactionRecord(BaseModel):
    """What is sent in place of the start of the conversation. Cumulative: the newest
    record alone says how the whole conversation is sent."""

    stage: Literal["clear", "summary"]
    # Messages in the transcript when it was made: a rewind to before that drops it.
    made_at: int
    # The first `summarized` messages are sent as `summary` (0: none). Workflow state
    # and activity inputs carry it by reference: `part_id` names the `data-compaction`
    # part of the transcript that holds it (`with_summary` reads it back).
    summarized: int = 0
    summary: str | None = None
    part_id: str | None = None
    # The first `cleared` tool results of the transcript are sent as CLEARED_TEXT.
    cleared: int = 0
    # The estimated request before and after (tokens), and the window it is kept in.
    tokens_before: int = 0
    tokens_after: int = 0
    window: int = 0
    # The summariser's model and what it used (a summary only).
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)

    def data(self, status: Literal["start", "end"]) -> dict[str, Any]:
        """The `data-compaction` part's data, as streamed and kept in the answer."""
        data: dict[str, Any] = {
            "status": status,
            "stage": self.stage,
            "tokensBefore": self.tokens_before,
            "window": self.window,
        }
        if status == "end":
            data.update(
                tokensAfter=self.tokens_after,
                summarizedMessages=self.summarized,
                clearedToolResults=self.cleared,
            )
            if self.summary is not None:
                data["summary"] = self.summary
        return data


# Compaction records a session keeps (the newest is in force; older ones are what a
# rewind falls back to).
KEPT_RECORDS = 8


def kept_compactions(
    records: Sequence[CompactionRecord], messages: int | None
) -> list[CompactionRecord]:
    """The records still in force for a transcript of `messages` messages (a rewind
    drops those made after its end; None: all), at most KEPT_RECORDS."""
    kept = [r for r in records if messages is None or r.made_at <= messages]
    return kept[-KEPT_RECORDS:]


def by_reference(record: CompactionRecord) -> CompactionRecord:
    """The record without its summary, which its `data-compaction` part holds: what
    workflow state and every later step's input carry, so they do not grow by it."""
    if record.part_id is None:
        return record
    return record.model_copy(update={"summary": None})


def with_summary(
    record: CompactionRecord | None, messages: Sequence[Message]
) -> CompactionRecord | None:
    """The record with its summary, read from its `data-compaction` part."""
    if record is None or record.summary is not None or not record.summarized:
        return record
    for message in reversed(messages):
        for part in message.parts:
            if isinstance(part, DataPart) and part.id == record.part_id:
                summary = part.data.get("summary") if isinstance(part.data, dict) else None
                return record.model_copy(update={"summary": str(summary or "")})
    return record


# -- estimating --------------------------------------------------------------------------


def _chars(value: Any) -> int:
    """About how many characters `value` takes as JSON, without encoding it."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict):
        return sum(len(str(k)) + 4 + _chars(v) for k, v in value.items()) + 2
    if isinstance(value, list | tuple):
        return sum(_chars(v) + 1 for v in value) + 2
    return len(str(value))


def _part_tokens(part: Part, cleared: bool) -> int:
    if isinstance(part, DataPart):
        return 0  # never sent
    if isinstance(part, FilePart):
        if part.media_type.startswith("image/"):
            return IMAGE_TOKENS
        # A data: URL is base64: three bytes in four characters.
        return (len(part.url) * 3 // 4) // CHARS_PER_TOKEN
    if isinstance(part, TextPart | ReasoningPart):
        return (len(part.text) + 16) // CHARS_PER_TOKEN
    if isinstance(part, ToolPart):
        output = CLEARED_TEXT if cleared else (part.output or part.error_text or "")
        return (_chars(part.input) + _chars(output) + len(part.tool_name) + 48) // CHARS_PER_TOKEN
    return 1


def _has_result(part: Part) -> bool:
    return isinstance(part, ToolPart) and part.state is ToolState.OUTPUT_AVAILABLE


def message_tokens(messages: Sequence[Message], cleared: int = 0) -> list[int]:
    """Each message's estimated tokens, with the first `cleared` tool results cleared."""
    counts, seen = [], 0
    for message in messages:
        total = 4
        for part in message.parts:
            if _has_result(part):
                seen += 1
                total += _part_tokens(part, seen <= cleared)
            else:
                total += _part_tokens(part, False)
        counts.append(total)
    return counts


def estimate_tokens(system: str | None, tools: Sequence[Any], messages: Sequence[Message]) -> int:
    """The estimated tokens of a request: its system prompt, tools and messages."""
    fixed = len(system or "") + sum(_chars(t) for t in tools)
    return fixed // CHARS_PER_TOKEN + sum(message_tokens(messages))


def tool_results(messages: Sequence[Message]) -> int:
    return sum(1 for m in messages for p in m.parts if _has_result(p))


# -- what is sent -----------------------------------------------------------------------


def summary_message(record: CompactionRecord, messages: Sequence[Message]) -> Message:
    """The user message that stands for the summarised turns. Its metadata says how many
    messages (and user messages) it stands for, for providers that count them (the
    scripted model picks its turn by the number of user messages)."""
    summarized = messages[: record.summarized]
    return Message(
        id=SUMMARY_MESSAGE_ID,
        role=Role.USER,
        parts=[TextPart(text=SUMMARY_HEADER + (record.summary or ""))],
        metadata={
            "compaction": {
                "messages": len(summarized),
                "userMessages": sum(1 for m in summarized if m.role is Role.USER),
            }
        },
    )


def excluded(message: Message) -> bool:
    """Whether an answer's turn is left out of what is sent: it failed because its
    request did not fit the window (`exclude_turn`)."""
    return bool((message.metadata or {}).get(EXCLUDED_KEY))


def exclude_turn(reply: Message) -> None:
    """Leave the turn `reply` answers out of what is sent from now on: a turn that failed
    because its request did not fit (one giant message) must not fail every next one."""
    reply.metadata = {**(reply.metadata or {}), EXCLUDED_KEY: True}


def _excluded_indexes(messages: Sequence[Message]) -> set[int]:
    """The positions of excluded answers and of the requests before them."""
    found: set[int] = set()
    for index, message in enumerate(messages):
        if message.role is Role.ASSISTANT and excluded(message):
            found.add(index)
            before = index - 1
            while (
                before >= 0
                and messages[before].role is Role.USER
                and messages[before].id != SUMMARY_MESSAGE_ID
            ):
                found.add(before)
                before -= 1
    return found


def _without_excluded(messages: Sequence[Message]) -> list[Message]:
    gone = _excluded_indexes(messages)
    return [m for i, m in enumerate(messages) if i not in gone]


def sent_messages(messages: Sequence[Message], record: CompactionRecord | None) -> list[Message]:
    """The conversation as the model sees it under `record`: the summarised messages
    as one summary message, the cleared tool results as a placeholder, and no turn
    that failed for not fitting. The same record gives the same messages, so the
    prompt's prefix stays byte-stable."""
    if record is None:
        return _without_excluded(messages)
    kept: list[Message] = []
    if record.summarized:
        kept.append(summary_message(record, messages))
    seen = 0
    for index, message in enumerate(messages):
        results = sum(1 for p in message.parts if _has_result(p))
        if index < record.summarized:
            seen += results
            continue
        if seen >= record.cleared or not results:
            seen += results
            kept.append(message)
            continue
        parts: list[Part] = []
        for part in message.parts:
            if _has_result(part):
                seen += 1
                if seen <= record.cleared:
                    assert isinstance(part, ToolPart)
                    part = part.model_copy(update={"output": CLEARED_TEXT})
            parts.append(part)
        kept.append(message.model_copy(update={"parts": parts}))
    return _without_excluded(kept)


# -- when and how much ------------------------------------------------------------------


def propose(
    messages: Sequence[Message],
    record: CompactionRecord | None,
    *,
    fixed_tokens: int,
    tokens: int,
    window: int,
    options: Compaction,
) -> CompactionRecord | None:
    """The next compaction for a request of `tokens` that passed the threshold, or None
    when there is nothing more to compact. Each proposal goes further than `record`
    (more cleared, or more summarised), so compacting again and again ends."""
    target = int(options.target * window)
    done_summarized = record.summarized if record else 0
    done_cleared = record.cleared if record else 0
    base = {
        "made_at": len(messages),
        "tokens_before": tokens,
        "window": window,
        "summarized": done_summarized,
        "summary": record.summary if record else None,
        "cleared": done_cleared,
    }
    cleared = done_cleared
    if options.clear_tool_results:
        cleared = max(done_cleared, tool_results(messages) - options.keep_tool_results)
    counts = message_tokens(messages, cleared)
    for index in _excluded_indexes(messages):
        counts[index] = 0
    summary_tokens = (
        (len(record.summary or "") // CHARS_PER_TOKEN + 16) if record and done_summarized else 0
    )
    cleared_only = fixed_tokens + summary_tokens + sum(counts[done_summarized:])
    clearing = (
        CompactionRecord(
            **{**base, "stage": "clear", "cleared": cleared}, tokens_after=cleared_only
        )
        if cleared > done_cleared
        else None
    )
    if clearing is not None and cleared_only <= target:
        return clearing
    # Summarise up to a user message: the first whose turns, kept, fit under the target.
    starts = [i for i, m in enumerate(messages) if m.role is Role.USER and done_summarized < i]
    if not starts:
        return clearing
    reserve = options.max_summary_tokens + 16
    suffix = [0] * (len(counts) + 1)
    for i in range(len(counts) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + counts[i]
    if fixed_tokens + reserve + suffix[starts[-1]] > window:
        # Even the newest turn alone does not fit (one giant message): a summary of the
        # turns before it cannot help, so none is written.
        return clearing if clearing is not None and cleared_only <= window else None
    boundary = next((b for b in starts if fixed_tokens + reserve + suffix[b] <= target), starts[-1])
    return CompactionRecord(
        **{**base, "stage": "summary", "summarized": boundary, "cleared": cleared, "summary": None},
        tokens_after=fixed_tokens + reserve + suffix[boundary],
    )
