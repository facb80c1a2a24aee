"""What long conversations cost, and whether they outlive the window (issue 26).

Against a local fake of the Anthropic Messages API (`tests.fake_anthropic`) that keeps
Anthropic's prompt-cache rules and refuses a prompt over a 200k-token window, with the
real `anthropic` SDK and provider:

1. **Cache**: a 30-turn session with tool calls (three requests a turn: two tool calls
   and an answer). Prints the share of input tokens read from the cache, the input
   tokens billed against the same session with no cache (every prompt token at the full
   price), and both priced at Anthropic's multipliers (cache write 1.25x, read 0.1x).
2. **Window**: sessions whose conversation adds up to 1M tokens on the 200k window, one
   of 150 kB of tool output a turn (old results get cleared), one of 200 kB messages and
   no tools (old turns get summarised): whether every turn answers, every request stays
   under the window, and `history()` returns every message; and how often it compacted.

Prints one JSON line (progress to stderr).

    python -m bench.context_cost [--turns 30] [--million 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

from pydantic import BaseModel

from bench.harness import bench_stack
from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.cli.localstack import free_port
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import connect_temporal
from sessionflow.contract import TurnStatus
from sessionflow.gateway.main import serve_gateway
from sessionflow.messages import DataPart
from sessionflow.providers.anthropic import AnthropicProvider
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.fake_anthropic import (
    FakeAnthropic,
    Stream,
    message_end,
    message_start,
    text_block,
    tool_block,
)

WRITE_PRICE, READ_PRICE = 1.25, 0.1  # Anthropic's multipliers of the input price
TALK = 200_000  # characters of each message in the session of long messages (50k tokens)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Dump(BaseModel):
    turn: int
    n: int
    size: int


async def _dump(args: Dump, ctx: ToolContext) -> str:
    del ctx
    line = f"turn {args.turn} call {args.n}: " + "0123456789abcdef" * 8 + "\n"
    return (line * (args.size // len(line) + 1))[: args.size]


dump = tool("dump", "Print `size` characters of output", input_schema=Dump, execute=_dump)
SYSTEM = "You are a careful coding agent. " * 40  # a system prompt of about 300 tokens


class Scripted:
    """How the fake model answers: a user message gets two tool calls in turn (one a
    step), then an answer; a summarising request gets a summary."""

    def __init__(self, size: int, calls: int = 2) -> None:
        self.size = size
        self.calls = calls

    def __call__(self, body: dict[str, Any], usage: tuple[int, int, int]) -> Stream:
        fresh, read, write = usage
        start = message_start(input_tokens=fresh, cache_read=read, cache_write=write)
        system = json.dumps(body.get("system"))
        if "compact a conversation" in system:
            summary = "The user asked for output in each turn; it was printed. " * 20
            return Stream([start, *text_block(0, summary, 1), *message_end("end_turn", 300)])
        messages = body["messages"]
        turn = sum(
            1
            for m in messages
            for b in m["content"]
            if m["role"] == "user" and b.get("type") == "text" and "Print" in b.get("text", "")
        )
        since = 0
        for message in reversed(messages):
            blocks = message["content"]
            if message["role"] == "user" and any(b.get("type") == "text" for b in blocks):
                break
            since += sum(1 for b in blocks if b.get("type") == "tool_result")
        if since < self.calls:
            call = {"turn": turn, "n": since, "size": self.size}
            events = tool_block(0, f"toolu_{uuid.uuid4().hex[:12]}", "dump", call)
            return Stream([start, *events, *message_end("tool_use", 40)])
        return Stream(
            [start, *text_block(0, f"Done with turn {turn}.", 1), *message_end("end_turn")]
        )


async def serve(api: FakeAnthropic) -> tuple[str, asyncio.Event, asyncio.Task[None]]:
    port = free_port()
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_gateway(api.app, "127.0.0.1", port, stop, started))  # type: ignore[arg-type]
    await started.wait()
    return f"http://127.0.0.1:{port}", stop, task


async def run_session(
    client: SessionClient, name: str, turns: int | None, *, until_tokens: int = 0, pad: int = 0
) -> tuple[int, float]:
    """Turns of 'Print ...' until `turns` or the conversation's `until_tokens`; returns
    the turns run and the seconds they took."""
    session = client.agent(name).session(f"{name}-{uuid.uuid4().hex[:6]}")
    began, turn = time.perf_counter(), 0
    while True:
        turn += 1
        ask = f"Print turn {turn}'s output, please." + " Here is more context." * (pad // 22)
        outcome = await (await session.send(ask)).outcome
        assert outcome.status is TurnStatus.FINISHED, (turn, outcome)
        if turns is not None and turn >= turns:
            break
        if until_tokens and turn % 5 == 0:
            say(f"{name}: {turn} turns")
        if until_tokens and turn * _turn_tokens(client, name) >= until_tokens:
            break
    history: list[Any] = []
    while page := await session.history(offset=len(history), limit=50):
        history.extend(page)
    assert len(history) == 2 * turn, (len(history), turn)
    _LAST[name] = history
    await session.close()  # its sandbox too (a workspace disk stays mounted until then)
    return turn, time.perf_counter() - began


_LAST: dict[str, list[Any]] = {}
_SIZES: dict[str, int] = {}


def _turn_tokens(client: SessionClient, name: str) -> int:
    del client
    return _SIZES[name] // 4


async def main(turns: int, million: int) -> dict[str, Any]:
    cache_api = FakeAnthropic(caching=True, answer_for=Scripted(4_800))
    window_api = FakeAnthropic(caching=True, answer_for=Scripted(75_000))
    talk_api = FakeAnthropic(caching=True, answer_for=Scripted(0, calls=0))
    cache_url, cache_stop, cache_task = await serve(cache_api)
    window_url, window_stop, window_task = await serve(window_api)
    talk_url, talk_stop, talk_task = await serve(talk_api)
    cached = agent("cached", model="anthropic/claude-sonnet-4-6", system=SYSTEM, tools=[dump])
    windowed = agent("windowed", model="anthropic/claude-sonnet-4-6", system=SYSTEM, tools=[dump])
    talk = agent("talk", model="anthropic/claude-sonnet-4-6", system=SYSTEM)
    # Characters a turn adds: two tool outputs; one long message.
    _SIZES.update(cached=9_600, windowed=150_000, talk=TALK)
    async with bench_stack() as stack:
        settings = Settings(data_dir=stack.root / "data")
        temporal = await connect_temporal(
            stack.config.temporal_address,
            external_storage=external_storage_from_settings(settings),
        )
        results: dict[str, Any] = {"bench": "context_cost"}
        runs = (
            (cached, cache_url, cache_api),
            (windowed, window_url, window_api),
            (talk, talk_url, talk_api),
        )
        for chosen, url, api in runs:
            worker = build_worker(
                temporal,
                stack.client.redis,
                [chosen],
                WorkerOptions(
                    task_queue=f"bench-{chosen.name}",
                    deployment=f"bench-{chosen.name}",
                    sandbox_root=stack.root / "sandboxes",
                    providers=[AnthropicProvider(api_key="sk-ant-bench", base_url=url)],
                ),
            )
            client = SessionClient(temporal, stack.client.redis, task_queue=f"bench-{chosen.name}")
            async with worker:
                if chosen is cached:
                    done, seconds = await run_session(client, "cached", turns)
                    results["cache"] = cache_figures(api, done, seconds)
                    say(f"cache: {results['cache']}")
                elif chosen is windowed:
                    done, seconds = await run_session(
                        client, "windowed", None, until_tokens=million
                    )
                    results["window_tool_output"] = window_figures(
                        api, done, seconds, _LAST["windowed"]
                    )
                    say(f"window, tool output: {results['window_tool_output']}")
                else:
                    done, seconds = await run_session(
                        client, "talk", None, until_tokens=million, pad=TALK
                    )
                    results["window_long_messages"] = window_figures(
                        api, done, seconds, _LAST["talk"]
                    )
                    say(f"window, long messages: {results['window_long_messages']}")
    stops = ((cache_stop, cache_task), (window_stop, window_task), (talk_stop, talk_task))
    for stop, task in stops:
        stop.set()
        await task
    return results


def cache_figures(api: FakeAnthropic, turns: int, seconds: float) -> dict[str, Any]:
    fresh = read = write = 0
    for tokens in api.usages:
        fresh, read, write = fresh + tokens[0], read + tokens[1], write + tokens[2]
    total = fresh + read + write
    priced = fresh + WRITE_PRICE * write + READ_PRICE * read
    return {
        "turns": turns,
        "requests": len(api.requests),
        "input_tokens": total,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
        "uncached_input_tokens": fresh,
        "cache_read_share": round(read / total, 4) if total else 0.0,
        "priced_input_tokens": round(priced),
        "no_cache_priced_input_tokens": total,
        "cost_vs_no_cache": round(priced / total, 4) if total else 0.0,
        "requests_reading_cache": sum(1 for u in api.usages if u[1] > 0),
        "seconds": round(seconds, 1),
    }


def window_figures(
    api: FakeAnthropic, turns: int, seconds: float, history: list[Any]
) -> dict[str, Any]:
    conversation = sum(len(m.model_dump_json()) for m in history) // 4
    compactions = [
        p.data
        for m in history
        for p in m.parts
        if isinstance(p, DataPart) and p.type == "data-compaction"
    ]
    return {
        "turns": turns,
        "requests": len(api.requests),
        "conversation_tokens": conversation,
        "largest_request_tokens": max(api.prompt_tokens),
        "window": api.window,
        "refused_over_window": api.refused_too_long,
        "every_turn_answered": True,
        "history_messages": len(history),
        "compactions": len(compactions),
        "summaries": sum(1 for c in compactions if c["stage"] == "summary"),
        "clearings": sum(1 for c in compactions if c["stage"] == "clear"),
        "cache_read_share": round(
            sum(u[1] for u in api.usages) / max(sum(sum(u) for u in api.usages), 1), 4
        ),
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--million", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.turns, args.million))))
