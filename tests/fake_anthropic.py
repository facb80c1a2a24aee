"""A local stand-in for the Anthropic Messages API, speaking its HTTP + SSE wire format.

Tests queue responses (event sequences of the real shape, or API errors) and read
back the requests the real `anthropic` SDK sent.
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


class FakeAnthropic:
    def __init__(self) -> None:
        self.queue: list[Stream | Failure] = []
        self.requests: list[Received] = []
        self.app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

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
        response = self.queue.pop(0) if self.queue else answer("(no scripted response)")
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
