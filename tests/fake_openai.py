"""A local stand-in for an OpenAI-compatible Chat Completions API (OpenAI, Ollama, vLLM,
llama.cpp, OpenRouter), speaking its HTTP + SSE wire format: `data: <chunk>` lines and a
closing `data: [DONE]`.

Tests queue responses (chunk sequences of the real shape, or API errors) and read back
the requests the real `openai` SDK sent. As the real servers do, the usage chunk is sent
only when the request asks for it (`stream_options.include_usage`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = "usage"  # marks the usage chunk in a Stream's chunks


@dataclass
class Stream:
    chunks: list[dict[str, Any]]
    cut_after: int | None = None  # drop the connection after this many chunks
    done: bool = True  # end with `data: [DONE]`


@dataclass
class Failure:
    status: int
    message: str
    kind: str = "invalid_request_error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    # Whether the previous request's prompt (tools and messages, byte for byte) is the
    # start of this one's, as OpenAI-compatible servers' automatic prefix caching needs;
    # None for the first request.
    prefix_matched: bool | None = None


def prompt_prefix_matches(previous: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether `body`'s prompt begins with all of `previous`'s: the same model and tools,
    and its messages, serialised, the same bytes as the earlier ones."""
    if previous.get("model") != body.get("model"):
        return False
    if json.dumps(previous.get("tools")) != json.dumps(body.get("tools")):
        return False
    before, now = previous.get("messages") or [], body.get("messages") or []
    if len(now) < len(before):
        return False
    return all(json.dumps(a) == json.dumps(b) for a, b in zip(before, now, strict=False))


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "fake-model", "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }  # fmt: skip


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))  # at most `pieces` pieces
    return [text[i : i + size] for i in range(0, len(text), size)]


def role() -> dict[str, Any]:
    return _chunk({"role": "assistant", "content": ""})


def text(content: str, pieces: int = 3) -> list[dict[str, Any]]:
    return [_chunk({"content": piece}) for piece in _split(content, pieces)]


def reasoning(content: str, key: str = "reasoning_content") -> list[dict[str, Any]]:
    """Reasoning as vLLM and DeepSeek (`reasoning_content`) or OpenRouter (`reasoning`)
    stream it."""
    return [_chunk({key: piece}) for piece in _split(content, 2)]


def tool_call(
    index: int, call_id: str | None, name: str, arguments: dict[str, Any] | str, pieces: int = 2
) -> list[dict[str, Any]]:
    """A call as OpenAI streams it: id and name first, then the arguments in pieces."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    head: dict[str, Any] = {"index": index, "type": "function"}
    if call_id is not None:
        head["id"] = call_id
    first = _chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
    return [
        first,
        *(
            _chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in _split(raw, pieces)
        ),
    ]


def whole_tool_call(
    call_id: str | None, name: str, arguments: dict[str, Any], index: int | None = 0
) -> dict[str, Any]:
    """A call in one chunk, as Ollama and the llama.cpp server send it (older Ollama
    without `index`: `index=None`)."""
    call: dict[str, Any] = {
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    if index is not None:
        call["index"] = index
    if call_id is not None:
        call["id"] = call_id
    return _chunk({"tool_calls": [call]})


def finish(reason: str) -> dict[str, Any]:
    return _chunk({}, finish_reason=reason)


def usage(
    prompt: int = 20, completion: int = 30, cached: int | None = None, cache_write: int = 0
) -> dict[str, Any]:
    """The last chunk, with no choices; `cached=None` leaves out the details, as Ollama does.
    `cache_write` reports cache writes as OpenRouter does (`cache_write_tokens` in the
    details, counted in `prompt_tokens`)."""
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        counts["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        if cache_write:
            counts["prompt_tokens_details"]["cache_write_tokens"] = cache_write
    return {USAGE: counts}


def error_event(message: str) -> dict[str, Any]:
    """An error object in the middle of a stream, as OpenRouter sends one."""
    return {"error": {"message": message, "code": 502}}


def answer(content: str, **counts: int) -> Stream:
    return Stream([role(), *text(content), finish("stop"), usage(**counts)])


class FakeOpenAI:
    def __init__(self) -> None:
        self.queue: list[Stream | Failure] = []
        self.requests: list[Received] = []
        self.url = ""  # set once it listens; the SDK's base URL is `<url>/v1`
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])]
        )

    def push(self, *responses: Stream | Failure) -> None:
        self.queue.extend(responses)

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        matched = prompt_prefix_matches(self.requests[-1].body, body) if self.requests else None
        self.requests.append(Received(body, dict(request.headers), time.monotonic(), matched))
        response = self.queue.pop(0) if self.queue else answer("(no scripted response)")
        if isinstance(response, Failure):
            return JSONResponse(
                {
                    "error": {
                        "message": response.message,
                        "type": response.kind,
                        "param": None,
                        "code": None,
                    }
                },
                status_code=response.status,
                headers=response.headers,
            )
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._sse(response, with_usage), media_type="text/event-stream")

    async def _sse(self, stream: Stream, with_usage: bool) -> AsyncIterator[str]:
        for n, chunk in enumerate(stream.chunks):
            if stream.cut_after is not None and n == stream.cut_after:
                raise ConnectionResetError("fake: connection dropped mid-stream")
            if USAGE in chunk:
                if not with_usage:
                    continue
                chunk = {**_chunk({}), "choices": [], "usage": chunk[USAGE]}
            yield f"data: {json.dumps(chunk)}\n\n"
            await asyncio.sleep(0.005)
        if stream.done:
            yield "data: [DONE]\n\n"
