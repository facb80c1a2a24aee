"""Server work per turn: what a session's turn asks of the Temporal server, read from
its workflow history.

Two agents on one worker: the clock agent, whose turn is one model step (streaming
`--tokens` tokens at `--rate` per second, as in `bench.concurrency`), and an agent whose
turn is a model step calling two tools, then a model step that answers. For each, the
session's first turn (which starts the workflow) and its second, as a client runs them
(`send`, then `await result.outcome` once the answer streams); beside them, the least a
start can cost: the `bench.start_baseline` workflow (signal-with-start, one activity).

Counted per turn, from history: workflow tasks, search attribute upserts (each a
visibility write), signals, updates, activities, markers (local activities and
patches), timers, and history events. Not in history, counted beside it: heartbeat
calls (activities heartbeat every 0.4 s, and each one the worker sends is a write on
the server), and the server's own write system calls and bytes sent to storage (its
SQLite database), less what it writes when idle. Prints one JSON line, and the table
to stderr.

    python -m bench.server_work [--rate 20] [--tokens 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import temporalio.activity
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.worker import Worker

from bench import start_baseline
from bench.clock import ClockProvider, clock_agent
from bench.harness import bench_stack, io_counts
from sessionflow.agents.definition import Agent, agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.worker.build import WorkerOptions, build_worker


class Note(BaseModel):
    text: str


async def _note(args: Note, ctx: ToolContext) -> dict[str, str]:
    return {"noted": args.text}


TWO_TOOLS = Script(
    name="two-tools",
    turns=[
        [
            ScriptStep(
                text="Noting two things.",
                tool_calls=[
                    ScriptedToolCall(tool="note", input={"text": "one"}),
                    ScriptedToolCall(tool="note", input={"text": "two"}),
                ],
            ),
            ScriptStep(text="Noted: {last_tool_output}."),
        ]
    ],
)
two_tools_agent = agent(
    "two-tools",
    model=TWO_TOOLS,
    tools=[tool("note", "Note something", input_schema=Note, execute=_note)],
)

_E = EventType
# What each figure counts, by history event.
_COUNTED: dict[str, tuple[EventType.ValueType, ...]] = {
    "workflow_tasks": (_E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,),
    "search_attribute_upserts": (_E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,),
    "signals": (_E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,),
    "updates": (_E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,),
    "activities": (_E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,),
    "timers_started": (_E.EVENT_TYPE_TIMER_STARTED,),
    "timers_cancelled": (_E.EVENT_TYPE_TIMER_CANCELED,),
    "workflow_starts": (_E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,),
}
_LOCAL_ACTIVITY_MARKER = "core_local_activity"
_PATCH_MARKER = "core_patch"


def count(events: list[HistoryEvent]) -> dict[str, int]:
    """The server work these history events stand for."""
    kinds = Counter(e.event_type for e in events)
    figures = {name: sum(kinds[k] for k in types) for name, types in _COUNTED.items()}
    markers = Counter(
        e.marker_recorded_event_attributes.marker_name
        for e in events
        if e.event_type == _E.EVENT_TYPE_MARKER_RECORDED
    )
    figures["local_activities"] = markers[_LOCAL_ACTIVITY_MARKER]
    figures["patch_markers"] = markers[_PATCH_MARKER]
    # A start writes the session's visibility record; each upsert rewrites it.
    figures["visibility_writes"] = figures["workflow_starts"] + figures["search_attribute_upserts"]
    figures["events"] = len(events)
    return figures


class HeartbeatCounter:
    """Counts `activity.heartbeat()` calls in this process (the worker sends at most
    one per throttle interval, 0.4 s, to the server)."""

    def __init__(self) -> None:
        self.calls = 0
        original = temporalio.activity.heartbeat

        def counted(*details: Any) -> None:
            self.calls += 1
            original(*details)

        temporalio.activity.heartbeat = counted


class ServerWrites:
    """The Temporal server's write system calls and bytes to storage, less its idle
    rate (it writes a little when nothing happens: shard and queue bookkeeping)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle_per_second = {"syscw": 0.0, "write_bytes": 0.0}

    async def measure_idle(self, seconds: float = 3.0) -> None:
        before, started = io_counts(self.pid), time.monotonic()
        await asyncio.sleep(seconds)
        after, elapsed = io_counts(self.pid), time.monotonic() - started
        self.idle_per_second = {k: (after[k] - before[k]) / elapsed for k in self.idle_per_second}

    async def during(self, work: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, int]]:
        before, started = io_counts(self.pid), time.monotonic()
        result = await work()
        after, elapsed = io_counts(self.pid), time.monotonic() - started
        writes = {
            f"server_{k}": max(0, round(after[k] - before[k] - rate * elapsed))
            for k, rate in self.idle_per_second.items()
        }
        return result, writes


async def settled_history(client: SessionClient, workflow_id: str) -> list[HistoryEvent]:
    """The history once it stops growing (the turn's last workflow task is in)."""
    handle = client.temporal.get_workflow_handle(workflow_id)
    events: list[HistoryEvent] = []
    while True:
        latest = (await handle.fetch_history()).events
        if events and len(latest) == len(events):
            return latest
        events = latest
        await asyncio.sleep(0.5)


async def turns_of(
    client: SessionClient, agent_name: str, server: ServerWrites, beats: HeartbeatCounter
) -> dict[str, dict[str, int]]:
    session = client.agent(agent_name).session(f"work-{agent_name}-{uuid.uuid4().hex[:6]}")
    figures: dict[str, dict[str, int]] = {}
    seen = 0
    for turn in ("first turn", "second turn"):

        async def run_turn(turn: str = turn) -> list[HistoryEvent]:
            result = await session.send(f"{turn}, please")
            # Await the outcome once the answer streams, so its update always lands
            # mid-turn (sent at once, it may ride the first workflow task or not).
            async for _ in result.stream():
                break
            outcome = await result.outcome
            assert outcome.status is TurnStatus.FINISHED, outcome
            return await settled_history(client, session.workflow_id)

        calls_before = beats.calls
        events, writes = await server.during(run_turn)
        figures[turn] = {
            **count(events[seen:]),
            "heartbeat_calls": beats.calls - calls_before,
            **writes,
        }
        seen = len(events)
    return figures


async def baseline_start(client: SessionClient, server: ServerWrites) -> dict[str, int]:
    """One `bench.start_baseline` workflow: signal-with-start, one activity."""

    async def run() -> list[HistoryEvent]:
        handle = await client.temporal.start_workflow(
            start_baseline.StartBaseline.run,
            id=f"work-baseline-{uuid.uuid4().hex[:6]}",
            task_queue=start_baseline.TASK_QUEUE,
            start_signal=start_baseline.SIGNAL,
            start_signal_args=["go"],
        )
        await handle.result()
        return await settled_history(client, handle.id)

    events, writes = await server.during(run)
    return {**count(events), "heartbeat_calls": 0, **writes}


async def main(rate: int, tokens: int) -> dict[str, Any]:
    beats = HeartbeatCounter()
    async with bench_stack() as stack:
        agents: list[Agent] = [clock_agent(rate, tokens), two_tools_agent]  # type: ignore[list-item]
        options = WorkerOptions(
            task_queue="bench", sandbox_root=stack.root / "sandboxes", providers=[ClockProvider()]
        )
        pid = stack.servers.pid("temporal")
        assert pid is not None
        server = ServerWrites(pid)
        temporal, client = stack.client.temporal, stack.client
        raw = Worker(
            temporal,
            task_queue=start_baseline.TASK_QUEUE,
            workflows=[start_baseline.StartBaseline],
            activities=[start_baseline.record_start],
        )
        async with raw, build_worker(temporal, client.redis, agents, options) as worker:
            await worker.wait_polling()
            await baseline_start(client, server)  # warm up: the first start pays more
            await server.measure_idle()
            turns = {
                "raw Temporal (signal-with-start, one activity)": {
                    "start": await baseline_start(client, server)
                },
                f"one model step (clock, {tokens} tokens at {rate}/s)": await turns_of(
                    client, "clock", server, beats
                ),
                "two tool calls (model step, 2 tools, model step)": await turns_of(
                    client, "two-tools", server, beats
                ),
            }
    return {"benchmark": "server_work", "turns": turns}


def table(turns: dict[str, dict[str, dict[str, int]]]) -> str:
    columns = list(next(iter(next(iter(turns.values())).values())))
    rows = [
        "| turn | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for kind, per_turn in turns.items():
        for turn, figures in per_turn.items():
            cells = " | ".join(str(figures[c]) for c in columns)
            rows.append(f"| {kind}, {turn} | {cells} |")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=20, help="clock tokens per second")
    parser.add_argument("--tokens", type=int, default=100, help="clock tokens per step")
    args = parser.parse_args()
    figures = asyncio.run(main(args.rate, args.tokens))
    print(table(figures["turns"]), file=sys.stderr)
    print(json.dumps(figures), flush=True)
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
