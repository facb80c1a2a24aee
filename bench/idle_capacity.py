"""Idle capacity: thousands of idle sessions with history on one worker process.

Each session has one finished turn and then waits for its next message, as most
sessions of a real deployment do. The worker keeps at most `--cache` sessions in
memory (Temporal's sticky workflow cache, `SESSIONFLOW_MAX_CACHED_WORKFLOWS`) and
evicts the least recently used; an evicted session costs nothing on the worker until
a message wakes it and its history is replayed. Reports the worker's RSS as the
session count grows, then the time to first chunk of waking evicted sessions beside
that of fresh ones. Prints one JSON line.

    python -m bench.idle_capacity [--sessions 2000] [--cache 500] [--probes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

from bench.harness import bench_stack, rss_mb
from sessionflow.client.session import Session
from sessionflow.contract import TurnStatus

# Each turn streams 5 tokens at 1,000 tokens/s: the model is not what is measured.
RATE, TOKENS = 1000, 5
IN_FLIGHT = 50


async def first_chunk_seconds(session: Session, text: str) -> float:
    """From calling send to the first text delta of the answer reaching a reader."""
    started = time.monotonic()
    result = await session.send(text)
    async for event in result.stream():
        if event.type == "text-delta":
            elapsed = time.monotonic() - started
            break
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FINISHED, outcome
    return elapsed


async def main(sessions: int, cache: int, probes: int) -> dict[str, Any]:
    async with bench_stack() as stack:
        worker = await stack.start_worker(RATE, TOKENS, SESSIONFLOW_MAX_CACHED_WORKFLOWS=str(cache))
        client = stack.client
        run = uuid.uuid4().hex[:6]
        handles = [client.agent("clock").session(f"idle-{run}-{i}") for i in range(sessions)]
        rss: dict[int, float] = {0: rss_mb(worker.pid)}
        gate = asyncio.Semaphore(IN_FLIGHT)
        failed = 0

        async def one_turn(session: Session) -> None:
            nonlocal failed
            async with gate:
                outcome = await (await session.send("hello")).outcome
                failed += outcome.status is not TurnStatus.FINISHED

        started = time.monotonic()
        step = max(sessions // 8, 1)
        for first in range(0, sessions, step):
            await asyncio.gather(*(one_turn(s) for s in handles[first : first + step]))
            done = min(first + step, sessions)
            rss[done] = rss_mb(worker.pid)
            print(f"# {done} sessions, worker RSS {rss[done]} MiB", file=sys.stderr, flush=True)
        fill_seconds = time.monotonic() - started
        await asyncio.sleep(2)
        rss_idle = rss_mb(worker.pid)

        # Alternate fresh and woken probes so drift on a noisy machine hits both alike.
        evicted = random.Random(7).sample(handles[: max(sessions - cache, 1)], probes)
        fresh, woken = [], []
        for i, session in enumerate(evicted):
            new = client.agent("clock").session(f"fresh-{run}-{i}")
            fresh.append(await first_chunk_seconds(new, "hello"))
            woken.append(await first_chunk_seconds(session, "wake up"))
        histories_ok = all([len(await s.history()) == 4 for s in evicted])
        peak = rss_mb(worker.pid, "VmHWM")

    at_cache = rss[min(rss, key=lambda n: abs(n - cache))]
    half = min(rss, key=lambda n: abs(n - sessions // 2))
    fresh_ms = statistics.median(fresh) * 1000
    woken_ms = statistics.median(woken) * 1000
    return {
        "benchmark": "idle_capacity",
        "sessions": sessions,
        "cached_workflows_max": cache,
        "failed_turns": failed,
        "fill_seconds": round(fill_seconds, 1),
        "worker_rss_mb_by_sessions": rss,
        "worker_rss_idle_mb": rss_idle,
        "worker_rss_growth_after_cache_full_mb": round(rss[sessions] - at_cache, 1),
        "worker_rss_growth_second_half_mb": round(rss[sessions] - rss[half], 1),
        "worker_peak_rss_mb": peak,
        "fresh_first_chunk_p50_ms": round(fresh_ms, 1),
        "woken_first_chunk_p50_ms": round(woken_ms, 1),
        "woken_first_chunk_max_ms": round(max(woken) * 1000, 1),
        "woken_over_fresh": round(woken_ms / fresh_ms, 2),
        "woken_histories_intact": histories_ok,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--cache", type=int, default=500, help="max cached workflows")
    parser.add_argument("--probes", type=int, default=20, help="sessions woken and started")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.sessions, args.cache, args.probes))), flush=True)
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
