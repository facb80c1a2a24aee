"""The OpenAI-compatible provider (`openai/<model>`), on the official SDK's async client.

It speaks the Chat Completions streaming API, the one dialect OpenAI, Ollama, vLLM,
the llama.cpp server and OpenRouter all share, so one provider covers hosted and local
models: `OPENAI_BASE_URL` picks the server. A local server needs no key, so with a base
URL and no `OPENAI_API_KEY` a placeholder key is sent.

The SDK's own retries are off: Temporal retries the model step, so every attempt
shows in the session's history, with the backoff the server asks for (`retry-after`).
Servers differ in small ways, and the parsing is lenient where they do: reasoning
arrives as `reasoning_content` (vLLM, DeepSeek) or `reasoning` (OpenRouter, Ollama), a
tool call's id may be missing, usage may come without cache details.

A user message with files has a list of content parts (`image_url`, `file` for PDFs,
plain text inlined); a message of text alone keeps its content a string, which is all
some local servers read.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import openai

from sessionflow.contract import FinishReason
from sessionflow.errors import InvalidModelRequest, ModelUnavailable
from sessionflow.messages import (
    FilePart,
    Message,
    Part,
    Role,
    StepStartPart,
    TextPart,
    ToolPart,
    ToolState,
)
from sessionflow.messages import Usage as StepUsage
from sessionflow.providers import files
from sessionflow.providers.base import (
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    StepFinished,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStart,
)

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Sent when a base URL is set without a key: local servers ignore it, and a hosted one
# answers 401, which fails the turn with the server's own words.
PLACEHOLDER_KEY = "sessionflow-no-key"
# OpenAI's own API (and Azure's) takes `max_completion_tokens`, and its reasoning
# models refuse `max_tokens`; every other compatible server reads `max_tokens`.
_OPENAI_HOSTS = ("api.openai.com", ".openai.azure.com")
_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class OpenAIProvider:
    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        max_tokens: int = 8192,
    ) -> None:
        # From the settings (OPENAI_API_KEY, OPENAI_BASE_URL, SESSIONFLOW_OPENAI_MAX_TOKENS)
        # through the registry.
        self._api_key = api_key or None
        self._base_url = base_url or None
        self._timeout = timeout
        self._max_tokens = max_tokens
        self._client: openai.AsyncOpenAI | None = None
        host = urlsplit(self._base_url).netloc.rpartition("@")[2] if self._base_url else ""
        self._label = f"OpenAI-compatible API at {host}" if host else "OpenAI API"
        hostname = (urlsplit(self._base_url).hostname or "") if self._base_url else ""
        is_openai = not hostname or any(
            hostname == h or (h.startswith(".") and hostname.endswith(h)) for h in _OPENAI_HOSTS
        )
        self._limit_field = "max_completion_tokens" if is_openai else "max_tokens"

    def _api(self) -> openai.AsyncOpenAI:
        if self._client is None:
            if not self._api_key and not self._base_url:
                raise InvalidModelRequest(
                    "OPENAI_API_KEY is not set on this worker "
                    "(a local server needs only OPENAI_BASE_URL)"
                )
            # Both given, so the SDK reads neither from the environment itself.
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key or PLACEHOLDER_KEY,
                base_url=self._base_url or DEFAULT_BASE_URL,
                max_retries=0,
                timeout=self._timeout,
            )
        return self._client

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The Chat Completions request for one step."""
        messages = to_chat_messages(request.messages)
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            # Without it a stream carries no token counts at all.
            "stream_options": {"include_usage": True},
            self._limit_field: request.max_output_tokens or self._max_tokens,
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        try:
            stream = await self._api().chat.completions.create(**self.request_body(request))
            async for event in _events(stream):
                yield event
        except openai.APIStatusError as err:
            raise _status_error(err, self._label) from err
        except openai.APIConnectionError as err:
            raise ModelUnavailable(f"{self._label} unreachable: {err}") from err
        except openai.APIError as err:
            # An `error` object in the middle of the stream (OpenRouter sends one when
            # the upstream model fails after the response has begun).
            raise ModelUnavailable(f"{self._label} failed mid-stream: {err.message}") from err


@dataclass
class _Call:
    """One tool call being assembled from deltas that share its `index`."""

    id: str | None = None
    name: str | None = None
    pieces: list[str] = field(default_factory=list)
    started: bool = False


async def _events(stream: Any) -> AsyncIterator[ModelEvent]:
    usage = StepUsage()
    calls: dict[int, _Call] = {}
    reason: FinishReason | None = None
    async for chunk in stream:
        if getattr(chunk, "usage", None) is not None:
            usage = _usage(chunk.usage)
        for choice in chunk.choices or []:
            if getattr(choice, "index", 0) != 0:
                continue  # only one completion is asked for
            delta = choice.delta
            if delta is not None:
                for event in _delta_events(delta, calls):
                    yield event
            if choice.finish_reason and reason is None:
                reason = _FINISH_REASONS.get(choice.finish_reason, FinishReason.OTHER)
                for event in _ready(calls):
                    yield event
    # Usage arrives in a last chunk of its own, after the finish reason.
    if reason is None:
        raise ModelUnavailable("the model's stream ended before a finish_reason")
    if calls and reason is FinishReason.STOP:
        reason = FinishReason.TOOL_CALLS  # Ollama and llama.cpp say `stop` after tool calls
    yield StepFinished(reason=reason, usage=usage)


def _delta_events(delta: Any, calls: dict[int, _Call]) -> list[ModelEvent]:
    events: list[ModelEvent] = []
    reasoning = _reasoning(delta)
    if reasoning:
        events.append(ReasoningDelta(reasoning))
    if delta.content:
        events.append(TextDelta(delta.content))
    for piece in delta.tool_calls or []:
        index = getattr(piece, "index", None)  # the SDK does not validate chunks
        if not isinstance(index, int):
            index = _index_of(piece, calls)
        call = calls.setdefault(index, _Call())
        function = piece.function
        call.id = call.id or getattr(piece, "id", None) or None
        if function is not None and function.name and not call.name:
            call.name = function.name
        arguments = (function.arguments if function is not None else None) or ""
        if not call.started and call.name:
            # The id and name come first; arguments that came before them are sent now.
            call.id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            call.started = True
            events.append(ToolCallStart(call.id, call.name))
            if call.pieces:
                events.append(ToolCallDelta(call.id, "".join(call.pieces)))
        call.pieces.append(arguments)
        if call.started and call.id and arguments:
            events.append(ToolCallDelta(call.id, arguments))
    return events


def _index_of(piece: Any, calls: dict[int, _Call]) -> int:
    """Servers that leave out `index` send each call whole: a new id is a new call."""
    given = getattr(piece, "id", None)
    if calls and (given is None or calls[max(calls)].id == given):
        return max(calls)
    return len(calls)


def _reasoning(delta: Any) -> str:
    for name in ("reasoning_content", "reasoning"):
        value = getattr(delta, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _ready(calls: dict[int, _Call]) -> list[ModelEvent]:
    events: list[ModelEvent] = []
    for index in sorted(calls):
        call = calls[index]
        if not call.started or call.id is None or call.name is None:
            raise ModelUnavailable("the model streamed a tool call without a name")
        events.append(ToolCallReady(call.id, call.name, _arguments("".join(call.pieces))))
    return events


def _arguments(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ModelUnavailable(f"tool input from the model is not valid JSON: {err}") from err
    return value if isinstance(value, dict) else {"value": value}


def _usage(reported: Any) -> StepUsage:
    """Counts as Anthropic's are counted: `input_tokens` is the prompt less what was
    read from the cache and what was written to it, so totals across providers add up
    the same way. Cache writes are counted where the server reports them: OpenRouter
    as `prompt_tokens_details.cache_write_tokens`, LiteLLM's proxy as Anthropic's
    `cache_creation_input_tokens` (OpenAI itself charges nothing for them and says
    nothing)."""
    prompt = _count(reported, "prompt_tokens")
    details = getattr(reported, "prompt_tokens_details", None)
    cached = _count(details, "cached_tokens") or _count(reported, "cache_read_input_tokens")
    written = _count(details, "cache_write_tokens") or _count(
        reported, "cache_creation_input_tokens"
    )
    return StepUsage(
        input_tokens=max(prompt - cached - written, 0),
        output_tokens=_count(reported, "completion_tokens"),
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


def _count(source: Any, name: str) -> int:
    """A token count the server may leave out, send as null or (the SDK does not
    validate) as something else: 0 for all of those."""
    value = getattr(source, name, None) if source is not None else None
    if value is None and isinstance(source, dict):
        value = source.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _status_error(err: openai.APIStatusError, label: str) -> Exception:
    status = err.status_code
    message = f"{label} {status}: {_message(err)}"
    if status in (408, 409, 429) or status >= 500:
        return ModelUnavailable(message, retry_after=_retry_after(err))
    return InvalidModelRequest(message)


def _message(err: openai.APIStatusError) -> str:
    """The server's own words; the SDK has already unwrapped `{"error": ...}`."""
    body = err.body
    if isinstance(body, str) and body:
        return body
    if isinstance(body, dict):
        detail = body.get("message") or body.get("error") or body.get("detail")
        if isinstance(detail, str) and detail:
            kind = body.get("type") or body.get("code")
            return f"{kind}: {detail}" if isinstance(kind, str) and kind else detail
    return str(err.message)


def _retry_after(err: openai.APIStatusError) -> float | None:
    headers = err.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            return max(float(raw) / scale, 0.0)
        except ValueError:
            pass
        try:  # `retry-after` may also be an HTTP date
            date = parsedate_to_datetime(raw)
            return max(date.timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            continue
    return None


# -- the transcript in the Chat Completions API's shape ------------------------------


def to_chat_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our messages as chat messages: each assistant step becomes an assistant message
    (its text, and its calls as `tool_calls`), followed by one `tool` message per call."""
    chat: list[dict[str, Any]] = []
    last_user = files.last_user_message(messages)
    for n, message in enumerate(messages):
        if message.role is Role.USER:
            content = files.user_content(message, file_content, strict=n == last_user)
            if not content:
                continue
            if chat and chat[-1]["role"] == "user":
                chat[-1]["content"].extend(content)  # some chat templates need turns to alternate
            else:
                chat.append({"role": "user", "content": content})
            continue
        for step in _steps(message.parts):
            text = "".join(p.text for p in step if isinstance(p, TextPart))
            tools = [p for p in step if isinstance(p, ToolPart)]
            if not text and not tools:
                continue
            turn: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tools:
                turn["tool_calls"] = [_tool_call(p) for p in tools]
            chat.append(turn)
            chat.extend(_tool_result(p) for p in tools)
    for turn in chat:
        if turn["role"] == "user" and all(p["type"] == "text" for p in turn["content"]):
            # Text alone stays a string: local servers (llama.cpp's) expect one.
            turn["content"] = "\n\n".join(p["text"] for p in turn["content"])
    return chat


def file_content(part: FilePart) -> dict[str, Any]:
    """A file part as a Chat Completions content part: an image as `image_url` (a data:
    URL or a link), a PDF as `file` (a data: URL only: the API fetches no links), plain
    text inline as a `text` part under its name. `InvalidModelRequest` (the turn fails,
    it is not retried) for what the API cannot take."""
    media = files.media_type(part)
    if media not in files.IMAGE_TYPES and media not in (files.PDF, files.TEXT):
        raise files.unsupported(part, "OpenAI-compatible models")
    if media in files.IMAGE_TYPES:
        url = part.url if files.is_link(part) else files.data_url(part, media)
        return {"type": "image_url", "image_url": {"url": url}}
    if files.is_link(part):
        raise InvalidModelRequest(
            f"{files.file_name(part)}: the Chat Completions API cannot fetch a {media} file "
            "from a link; send it as a data: URL"
        )
    if media == files.PDF:
        # OpenAI refuses `file_data` without a name; the AI SDK makes one up as well.
        name = part.filename or "document.pdf"
        return {
            "type": "file",
            "file": {"filename": name, "file_data": files.data_url(part, media)},
        }
    text = files.decoded_text(part)
    return {"type": "text", "text": f"# {part.filename}\n\n{text}" if part.filename else text}


def _steps(parts: list[Part]) -> list[list[Part]]:
    steps: list[list[Part]] = []
    for part in parts:
        if isinstance(part, StepStartPart) or not steps:
            steps.append([])
        if not isinstance(part, StepStartPart):
            steps[-1].append(part)
    return steps


def _tool_call(part: ToolPart) -> dict[str, Any]:
    return {
        "id": part.tool_call_id,
        "type": "function",
        "function": {"name": part.tool_name, "arguments": json.dumps(part.input)},
    }


def _tool_result(part: ToolPart) -> dict[str, Any]:
    """Chat messages have no error flag: a failed or denied call says so in its text."""
    if part.state is ToolState.OUTPUT_AVAILABLE:
        output = part.output
        content = output if isinstance(output, str) else json.dumps(output)
    else:
        content = f"Error: {part.error_text or 'the tool did not run'}"
    return {"role": "tool", "tool_call_id": part.tool_call_id, "content": content}
