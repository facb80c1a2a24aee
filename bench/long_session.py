"""Long sessions: what one step costs as the transcript grows to 0.1, 1, 10 and 50 MB.

At each size a probe turn (a model step, one small tool call, a model step) is timed
three times, and reported: per-step latency, workflow history bytes and payload store
bytes added per step, the largest activity input, and the worker's RSS. Flat is the
target. The same is measured side by side for a session that carries its transcript
by value in every step's input (as before the transcript store: commits off), up to
10 MB (past that it writes gigabytes). Prints one JSON line.

    python -m bench.long_session [--sizes 0.1,1,10,50] [--baseline-up-to 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.harness import bench_stack, rss_mb
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import connect_temporal
from sessionflow.contract import SessionLimits, TurnStatus
from sessionflow.storage import external_storage_from_settings

FILL = "calls=10 size=100000"  # 1 MB of tool output per turn
PROBE = "calls=1 size=1000"
PROBE_STEPS = 3  # model step, tool call, model step
MB = 1_000_000


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


async def history_of(temporal: Client, workflow_id: str) -> tuple[str, list[Any]]:
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    return history.run_id, list(history.events)


async def probe(client: SessionClient, session_id: str, store: Path) -> dict[str, float] | None:
    """One probe turn's figures, or None if the session continued as new during it."""
    session = client.agent("long").session(session_id)
    temporal = client.temporal
    run, before = await history_of(temporal, session.workflow_id)
    stored = store_bytes(store)
    started = time.perf_counter()
    outcome = await (await session.send(PROBE)).outcome
    elapsed = time.perf_counter() - started
    assert outcome.status is TurnStatus.FINISHED, outcome
    run_after, after = await history_of(temporal, session.workflow_id)
    if run_after != run:
        return None
    new = after[len(before) :]
    inputs = [
        e.activity_task_scheduled_event_attributes.input.ByteSize()
        for e in new
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    return {
        "step_ms": elapsed * 1000 / PROBE_STEPS,
        "history_bytes_per_step": sum(e.ByteSize() for e in new) / PROBE_STEPS,
        "store_bytes_per_step": (store_bytes(store) - stored) / PROBE_STEPS,
        "largest_input_bytes": max(inputs, default=0),
    }


async def grow(client: SessionClient, session_id: str, have: float, want: float) -> float:
    """Fill the transcript from `have` to at least `want` MB; the size reached."""
    session = client.agent("long").session(session_id)
    while have < want:
        order = FILL if want - have >= 1 else "calls=1 size=100000"
        outcome = await (await session.send(order)).outcome
        assert outcome.status is TurnStatus.FINISHED, outcome
        have += 1.0 if order == FILL else 0.1
    return have


async def measure(
    client: SessionClient, sizes: list[float], store: Path, worker_pid: int, label: str
) -> list[dict[str, Any]]:
    session_id = f"{label.split()[1]}-{uuid.uuid4().hex[:6]}"
    rows, have = [], 0.0
    for size in sizes:
        began = time.perf_counter()
        have = await grow(client, session_id, have, size)
        say(f"{label}: {have:.1f} MB of transcript ({time.perf_counter() - began:.0f} s to grow)")
        samples = [s for s in [await probe(client, session_id, store) for _ in range(3)] if s]
        rows.append(
            {
                "transcript_mb": round(have, 1),
                **{k: round(statistics.median(s[k] for s in samples)) for k in samples[0]},
                "worker_rss_mb": round(rss_mb(worker_pid)),
            }
        )
        say(f"{label}: {rows[-1]}")
    return rows


async def main(sizes: list[float], baseline_up_to: float) -> dict[str, Any]:
    async with bench_stack() as stack:
        data = stack.root / "data"
        settings = Settings(data_dir=data)
        temporal = await connect_temporal(
            stack.config.temporal_address,
            external_storage=external_storage_from_settings(settings),
        )
        worker = await stack.start_worker(
            0, 0, module="bench.long_worker", SESSIONFLOW_DATA_DIR=str(data)
        )
        store = data / "payloads"
        by_reference = SessionClient(temporal, stack.client.redis, task_queue="bench")
        by_value = SessionClient(
            temporal,
            stack.client.redis,
            task_queue="bench",
            limits=SessionLimits(commit_transcript_after_bytes=10**15),
        )
        ours = await measure(by_reference, sizes, store, worker.pid, "by reference")
        small = [s for s in sizes if s <= baseline_up_to]
        before = await measure(by_value, small, store, worker.pid, "by value (before)")
        return {
            "bench": "long_session",
            "probe": f"{PROBE_STEPS} steps: model step, one tool call ({PROBE}), model step",
            "by_reference": ours,
            "by_value_before": before,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.1,1,10,50")
    parser.add_argument("--baseline-up-to", type=float, default=10)
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    print(json.dumps(asyncio.run(main(sizes, args.baseline_up_to))))
