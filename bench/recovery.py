"""Recovery: a worker SIGKILLed mid-stream; how long until a reader receives the next
chunk, written by the worker that takes over.

Two worker processes serve the sessions; the one running the most model steps is
killed while every session streams. The server notices a dead activity when its
heartbeats stop (the model step's heartbeat timeout) and schedules the retry after
the retry policy's first interval; the survivor picks it up and the reader sees the
retry's first chunk. Each round replaces the killed worker. Prints one JSON line.

    python -m bench.recovery [--rounds 3] [--sessions 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.harness import bench_stack
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.streams.assemble import assemble
from sessionflow.streams.reader import StreamEvent
from sessionflow.workflows import policies

# Long enough that every session is still streaming when the worker dies.
RATE, TOKENS = 20, 300


async def main(rounds: int, sessions: int) -> dict[str, Any]:
    gaps: list[float] = []
    intact = True
    async with bench_stack() as stack:
        workers = [await stack.start_worker(RATE, TOKENS) for _ in range(2)]
        for number in range(1, rounds + 1):
            victim, round_gaps, round_intact = await one_round(stack.client, workers, sessions)
            gaps += round_gaps
            intact &= round_intact
            workers.remove(victim)
            workers.append(await stack.start_worker(RATE, TOKENS))
            print(
                f"# round {number}: {len(round_gaps)} sessions recovered",
                file=sys.stderr,
                flush=True,
            )

    heartbeat = policies.MODEL_STEP.heartbeat
    first_retry = policies.MODEL_STEP.retry.initial_interval
    assert heartbeat is not None and first_retry is not None
    return {
        "benchmark": "recovery",
        "rounds": rounds,
        "sessions_per_round": sessions,
        "sessions_recovered": len(gaps),
        "histories_and_streams_intact": intact,
        "kill_to_next_chunk_p50_s": round(statistics.median(gaps), 2),
        "kill_to_next_chunk_max_s": round(max(gaps), 2),
        "heartbeat_timeout_s": heartbeat.total_seconds(),
        "first_retry_interval_s": first_retry.total_seconds(),
        "bound_s": (heartbeat + first_retry).total_seconds(),
    }


Received = list[tuple[StreamEvent, float]]


async def one_round(
    client: SessionClient, workers: list[subprocess.Popen[str]], sessions: int
) -> tuple[subprocess.Popen[str], list[float], bool]:
    """Sessions stream, the busiest worker dies; returns it, the kill-to-next-chunk gap
    of every session it was serving, and whether every stream equals its history."""
    run = uuid.uuid4().hex[:6]
    handles = [client.agent("clock").session(f"rec-{run}-{i}") for i in range(sessions)]
    received: list[Received] = [[] for _ in handles]
    streaming = [asyncio.Event() for _ in handles]

    async def read(workflow_id: str, into: Received, started: asyncio.Event) -> None:
        async for event in client.reader.read(workflow_id):
            into.append((event, time.monotonic()))
            if event.type == "text-delta":
                started.set()

    readers = [
        asyncio.create_task(read(h.workflow_id, into, started))
        for h, into, started in zip(handles, received, streaming, strict=True)
    ]
    results = [await h.send("go") for h in handles]
    await asyncio.gather(*(started.wait() for started in streaming))
    await asyncio.sleep(1.0)
    victim = await busiest(client, [h.workflow_id for h in handles], workers)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    outcomes = await asyncio.wait_for(asyncio.gather(*(r.outcome for r in results)), 300)
    await asyncio.wait_for(asyncio.gather(*readers), 60)

    gaps: list[float] = []
    intact = all(o.status is TurnStatus.FINISHED for o in outcomes)
    for handle, events in zip(handles, received, strict=True):
        retried = [at for e, at in events if e.attempt > 1 and at > killed_at]
        if retried:
            gaps.append(min(retried) - killed_at)
        reply = (await handle.history())[-1]
        intact &= assemble([e for e, _ in events]) == reply
    return victim, gaps, intact


async def busiest(
    client: SessionClient, workflow_ids: list[str], workers: list[subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    """The worker process whose identity ran the most of these sessions' model steps."""
    counts = {w.pid: 0 for w in workers}
    for workflow_id in workflow_ids:
        description = await client.temporal.get_workflow_handle(workflow_id).describe()
        for activity in description.raw_description.pending_activities:
            pid = int(activity.last_worker_identity.split("@")[0] or 0)
            if pid in counts:
                counts[pid] += 1
    chosen = max(counts, key=lambda pid: counts[pid])
    return next(w for w in workers if w.pid == chosen)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=6)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds, args.sessions))), flush=True)
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
