"""The Anthropic provider (`anthropic/<model>`), on the official SDK's async client.

The SDK's own retries are off: Temporal retries the model step, so every attempt
shows in the session's history, with the backoff the API asks for (`retry-after`).
Prompt caching: the system prompt, the tool definitions and the newest message of each
request carry `cache_control` (three breakpoints of the API's four). The newest one
moves with the conversation: a step's whole prompt is written to the cache, and the
next step (whose prompt begins with it, byte for byte) reads it back, so a long
session pays the full input price only for what each step adds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from sessionflow.contract import FinishReason
from sessionflow.errors import ContextTooLarge, InvalidModelRequest, ModelUnavailable
from sessionflow.messages import (
    FilePart,
    Message,
    Part,
    ReasoningPart,
    Role,
    StepStartPart,
    TextPart,
    ToolPart,
    ToolState,
    Usage,
)
from sessionflow.providers import files
from sessionflow.providers.base import (
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    ReasoningSignature,
    StepFinished,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStart,
)

PROVIDER = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
_CACHE = {"type": "ephemeral"}
_STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "tool_use": FinishReason.TOOL_CALLS,
    "max_tokens": FinishReason.LENGTH,
    "refusal": FinishReason.CONTENT_FILTER,
    "pause_turn": FinishReason.OTHER,
}


class AnthropicProvider:
    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 8192,
        thinking_budget: int | None = None,
        timeout: float = 600.0,
    ) -> None:
        # From the settings (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL) through the registry;
        # the SDK is given both, so it reads neither from the environment itself.
        self._api_key = api_key or None
        self._base_url = base_url or DEFAULT_BASE_URL
        self._max_tokens = max_tokens
        self._thinking_budget = thinking_budget
        self._timeout = timeout
        self._client: anthropic.AsyncAnthropic | None = None

    def _api(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            if not self._api_key:
                raise InvalidModelRequest("ANTHROPIC_API_KEY is not set on this worker")
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                max_retries=0,
                timeout=self._timeout,
            )
        return self._client

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The Messages API request for one step."""
        messages = to_anthropic_messages(request.messages)
        _mark_newest(messages)
        max_tokens = request.max_output_tokens or self._max_tokens
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": messages,
        }
        if request.system:
            body["system"] = [{"type": "text", "text": request.system, "cache_control": _CACHE}]
        if request.tools:
            tools = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in request.tools
            ]
            tools[-1]["cache_control"] = _CACHE
            body["tools"] = tools
        if self._thinking_budget:
            if self._thinking_budget >= max_tokens:
                raise InvalidModelRequest(
                    f"the thinking budget ({self._thinking_budget} tokens, "
                    "SESSIONFLOW_ANTHROPIC_THINKING_BUDGET) must be below the step's output "
                    f"limit ({max_tokens}, the agent's max_output_tokens)"
                )
            body["thinking"] = {"type": "enabled", "budget_tokens": self._thinking_budget}
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        try:
            stream = await self._api().messages.create(**self.request_body(request), stream=True)
            async for event in _events(stream):
                yield event
        except anthropic.APIStatusError as err:
            raise _status_error(err) from err
        except anthropic.APIConnectionError as err:
            raise ModelUnavailable(f"Anthropic API unreachable: {err}") from err


async def _events(stream: Any) -> AsyncIterator[ModelEvent]:
    usage = Usage()
    tools: dict[int, tuple[str, str, list[str]]] = {}
    reason = FinishReason.OTHER
    async for event in stream:
        kind = event.type
        if kind == "message_start":
            usage = _usage(event.message.usage, usage)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                tools[event.index] = (block.id, block.name, [])
                yield ToolCallStart(block.id, block.name)
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                yield TextDelta(delta.text)
            elif delta.type == "thinking_delta":
                yield ReasoningDelta(delta.thinking)
            elif delta.type == "signature_delta":
                yield ReasoningSignature(delta.signature)
            elif delta.type == "input_json_delta" and event.index in tools:
                tools[event.index][2].append(delta.partial_json)
                yield ToolCallDelta(tools[event.index][0], delta.partial_json)
        elif kind == "content_block_stop" and event.index in tools:
            call_id, name, pieces = tools.pop(event.index)
            yield ToolCallReady(call_id, name, _arguments("".join(pieces)))
        elif kind == "message_delta":
            if event.delta.stop_reason:
                reason = _STOP_REASONS.get(event.delta.stop_reason, FinishReason.OTHER)
            usage = _usage(event.usage, usage)
        elif kind == "message_stop":
            yield StepFinished(reason=reason, usage=usage)
            return
    raise ModelUnavailable("the Anthropic stream ended before message_stop")


def _arguments(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ModelUnavailable(f"tool input from the model is not valid JSON: {err}") from err
    return value if isinstance(value, dict) else {"value": value}


def _usage(reported: Any, previous: Usage) -> Usage:
    """Anthropic reports cumulative counts; later events only carry some of them."""

    def pick(name: str, old: int) -> int:
        value = getattr(reported, name, None)
        return old if value is None else int(value)

    return Usage(
        input_tokens=pick("input_tokens", previous.input_tokens),
        output_tokens=pick("output_tokens", previous.output_tokens),
        cache_read_tokens=pick("cache_read_input_tokens", previous.cache_read_tokens),
        cache_write_tokens=pick("cache_creation_input_tokens", previous.cache_write_tokens),
    )


def _status_error(err: anthropic.APIStatusError) -> Exception:
    status = err.status_code
    message = f"Anthropic API {status}: {_message(err)}"
    if status in (408, 409, 429) or status >= 500:
        return ModelUnavailable(message, retry_after=_retry_after(err))
    if "prompt is too long" in message:
        # Over the window though the estimate said it fit: the turn is left out of what
        # later turns send (`sessionflow.compaction.exclude_turn`).
        return ContextTooLarge(message)
    return InvalidModelRequest(message)


def _message(err: anthropic.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        detail = body.get("error")
        if isinstance(detail, dict) and detail.get("message"):
            return f"{detail.get('type', 'error')}: {detail['message']}"
    return str(err.message)


def _retry_after(err: anthropic.APIStatusError) -> float | None:
    headers = err.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(float(raw) / scale, 0.0)
            except ValueError:
                continue
    return None


# -- the transcript in the Messages API's shape ------------------------------------

# Blocks the API does not let a breakpoint sit on.
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


def _mark_newest(turns: list[dict[str, Any]]) -> None:
    """The moving breakpoint: `cache_control` on the last block of the newest message
    that can carry one (not thinking, not empty text)."""
    if not turns:
        return
    for block in reversed(turns[-1]["content"]):
        if block.get("type") in _UNCACHEABLE or block.get("text") == "":
            continue
        block["cache_control"] = _CACHE
        return


def to_anthropic_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our messages as Messages API turns: each assistant step becomes an assistant
    message, and its tool outcomes a user message of `tool_result` blocks."""
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    last_user = files.last_user_message(messages)
    for n, message in enumerate(messages):
        if message.role is Role.USER:
            add("user", files.user_content(message, file_block, strict=n == last_user))
            continue
        for step in _steps(message.parts):
            add("assistant", [b for p in step if (b := _assistant_block(p)) is not None])
            add("user", [_tool_result(p) for p in step if isinstance(p, ToolPart)])
    return turns


def file_block(part: FilePart) -> dict[str, Any]:
    """A file part as an `image` or `document` content block: images and PDFs inline
    (base64) or by URL, plain text inline as a document. `InvalidModelRequest` (the turn
    fails, it is not retried) for what the Messages API cannot take."""
    media = files.media_type(part)
    if media in files.IMAGE_TYPES:
        kind = "image"
    elif media in (files.PDF, files.TEXT):
        kind = "document"
    else:
        raise files.unsupported(part, "Anthropic models")
    if files.is_link(part):
        if media == files.TEXT:
            raise InvalidModelRequest(
                f"{files.file_name(part)}: a {files.TEXT} file must be sent as a data: URL, "
                "not a link"
            )
        source: dict[str, Any] = {"type": "url", "url": part.url}
    elif media == files.TEXT:
        source = {"type": "text", "media_type": files.TEXT, "data": files.decoded_text(part)}
    else:
        source = {"type": "base64", "media_type": media, "data": files.base64_data(part)}
    block: dict[str, Any] = {"type": kind, "source": source}
    if kind == "document" and part.filename:
        block["title"] = part.filename
    return block


def _steps(parts: list[Part]) -> list[list[Part]]:
    steps: list[list[Part]] = []
    for part in parts:
        if isinstance(part, StepStartPart) or not steps:
            steps.append([])
        if not isinstance(part, StepStartPart):
            steps[-1].append(part)
    return steps


def _assistant_block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart) and part.text:
        return {"type": "text", "text": part.text}
    if isinstance(part, ReasoningPart) and part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, ToolPart):
        return {
            "type": "tool_use",
            "id": part.tool_call_id,
            "name": part.tool_name,
            "input": part.input,
        }
    return None


def _tool_result(part: ToolPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id}
    if part.state is ToolState.OUTPUT_AVAILABLE:
        output = part.output
        block["content"] = output if isinstance(output, str) else json.dumps(output)
    else:
        block["content"] = part.error_text or "the tool did not run"
        block["is_error"] = True
    return block
