"""A local stand-in for the Anthropic Messages API, speaking its HTTP + SSE wire format.

Tests queue responses (event sequences of the real shape, or API errors) and read
back the requests the real `anthropic` SDK sent. It refuses what the real API refuses:
more than four `cache_control` breakpoints, and a prompt over the model's window
(`window`, 200k tokens: "prompt is too long: N tokens > 200000 maximum"), its tokens
estimated as four characters each (an image 1,600). With `caching=True` it applies
Anthropic's prompt-cache rules (`PromptCache`) and reports cache reads and writes in
the usage of answers it makes up (`answer_for`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Stream:
    events: list[dict[str, Any]]
    cut_after: int | None = None  # drop the connection after this many events


@dataclass
class Failure:
    status: int
    kind: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


def message_start(
    input_tokens: int = 20, cache_read: int = 0, cache_write: int = 0
) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens, "output_tokens": 1,
                "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read,
            },
        },
    }  # fmt: skip


def text_block(index: int, text: str, pieces: int = 3) -> list[dict[str, Any]]:
    size = max(1, len(text) // pieces)
    deltas = [text[i : i + size] for i in range(0, len(text), size)]
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
        *(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": d},
            }
            for d in deltas
        ),
        {"type": "content_block_stop", "index": index},
    ]


def thinking_block(index: int, thinking: str, signature: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "thinking_delta", "thinking": thinking},
        },
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "signature_delta", "signature": signature},
        },
        {"type": "content_block_stop", "index": index},
    ]


def tool_block(index: int, call_id: str, name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    raw = json.dumps(args)
    half = len(raw) // 2
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": raw[:half]},
        },
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": raw[half:]},
        },
        {"type": "content_block_stop", "index": index},
    ]


def message_end(stop_reason: str, output_tokens: int = 30) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def answer(text: str, **usage: int) -> Stream:
    return Stream([message_start(**usage), *text_block(0, text), *message_end("end_turn")])


# The Messages API takes at most this many `cache_control` breakpoints per request.
MAX_BREAKPOINTS = 4
WINDOW = 200_000
IMAGE_TOKENS = 1_600
# The shortest prefix the cache keeps (Sonnet's), and how far back from a breakpoint a
# request's prefix is looked up.
MIN_CACHEABLE = 1_024
LOOKBACK_BLOCKS = 20


def _text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def block_tokens(block: Any) -> int:
    """About what one content block, tool or system block costs."""
    if not isinstance(block, dict):
        return _text_tokens(str(block))
    kind = block.get("type")
    if kind in ("image",):
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source") or {}
        data = source.get("data") or ""
        return (
            (len(data) * 3 // 4 + 3) // 4 if source.get("type") == "base64" else _text_tokens(data)
        )
    clean = {k: v for k, v in block.items() if k != "cache_control"}
    return _text_tokens(json.dumps(clean))


def prompt_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt in the order the cache sees it: tools, system, then messages."""
    blocks: list[dict[str, Any]] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, str):
        blocks.append({"type": "text", "text": system})
    elif system:
        blocks.extend(system)
    for message in body.get("messages") or []:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content:
            blocks.append({**block, "_role": message["role"]})
    return blocks


def count_tokens(body: dict[str, Any]) -> int:
    return sum(block_tokens(b) for b in prompt_blocks(body))


class PromptCache:
    """Anthropic's prompt-cache rules, simplified to what decides the bill: a request
    writes the prefix up to each `cache_control` breakpoint (if at least MIN_CACHEABLE
    tokens); a later request reads the longest cached prefix that ends at a block
    boundary at most LOOKBACK_BLOCKS before one of its breakpoints. What lies between
    the read prefix and the last breakpoint is written; the rest is plain input."""

    def __init__(self) -> None:
        self.written: set[str] = set()

    def usage(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(input, cache read, cache write) tokens of a request, caching what it writes."""
        blocks = prompt_blocks(body)
        hashes, totals = [], []
        running, total = hashlib.sha256(), 0
        for block in blocks:
            clean = {k: v for k, v in block.items() if k != "cache_control"}
            running.update(json.dumps(clean, sort_keys=True).encode())
            hashes.append(running.copy().hexdigest())
            total += block_tokens(block)
            totals.append(total)
        marks = [i for i, b in enumerate(blocks) if "cache_control" in b]
        read_at = -1
        for mark in marks:
            for i in range(mark, max(-1, mark - LOOKBACK_BLOCKS - 1), -1):
                if hashes[i] in self.written:
                    read_at = max(read_at, i)
                    break
        read = totals[read_at] if read_at >= 0 else 0
        last = marks[-1] if marks else -1
        write = 0
        if last >= 0 and totals[last] >= MIN_CACHEABLE and last > read_at:
            write = totals[last] - read
            for mark in marks:
                if totals[mark] >= MIN_CACHEABLE:
                    self.written.add(hashes[mark])
        return total - read - write, read, write


def too_long(tokens: int, window: int) -> JSONResponse:
    return JSONResponse(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": f"prompt is too long: {tokens} tokens > {window} maximum",
            },
        },
        status_code=400,
    )


class FakeAnthropic:
    def __init__(
        self,
        *,
        window: int = WINDOW,
        caching: bool = False,
        answer_for: Callable[[dict[str, Any], tuple[int, int, int]], Stream] | None = None,
    ) -> None:
        self.queue: list[Stream | Failure] = []
        self.requests: list[Received] = []
        self.window = window
        # Set: Anthropic's cache rules apply, and `answer_for(body, usage)` answers when
        # nothing is queued (usage: input, cache read, cache write tokens).
        self.cache = PromptCache() if caching else None
        self.answer_for = answer_for
        # Per request (in order): its estimated prompt tokens, and whether it was refused
        # for passing the window.
        self.prompt_tokens: list[int] = []
        self.refused_too_long = 0
        # Per request taken: (input, cache read, cache write) tokens, as billed.
        self.usages: list[tuple[int, int, int]] = []
        self.app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])
        self.url = ""  # set once it listens (`tests.serving`)

    def push(self, *responses: Stream | Failure) -> None:
        self.queue.extend(responses)

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(Received(body, dict(request.headers), time.monotonic()))
        breakpoints = json.dumps(body).count('"cache_control"')
        if breakpoints > MAX_BREAKPOINTS:  # as the API refuses it
            return JSONResponse(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control "
                        f"may be provided. Found {breakpoints}.",
                    },
                },
                status_code=400,
            )
        tokens = count_tokens(body)
        self.prompt_tokens.append(tokens)
        if tokens > self.window:  # as the API refuses it
            self.refused_too_long += 1
            return too_long(tokens, self.window)
        usage = self.cache.usage(body) if self.cache is not None else (tokens, 0, 0)
        self.usages.append(usage)
        if self.queue:
            response = self.queue.pop(0)
        elif self.answer_for is not None:
            response = self.answer_for(body, usage)
        else:
            response = answer("(no scripted response)")
        if isinstance(response, Failure):
            return JSONResponse(
                {"type": "error", "error": {"type": response.kind, "message": response.message}},
                status_code=response.status,
                headers=response.headers,
            )
        return StreamingResponse(self._sse(response), media_type="text/event-stream")

    async def _sse(self, stream: Stream) -> AsyncIterator[str]:
        for n, event in enumerate(stream.events):
            if stream.cut_after is not None and n == stream.cut_after:
                raise ConnectionResetError("fake: connection dropped mid-stream")
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            await asyncio.sleep(0.005)
