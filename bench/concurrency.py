"""Concurrency: N sessions streaming at once on one worker process.

Every session's turn must finish, every delta the clock model emitted must reach its
reader (none lost, none twice), and each reader's reassembled message must equal the
session's history. Reports chunk latency (model emit -> reader receive) and the
worker's peak RSS, and where a start-up burst spends its time: how long sessions'
first workflow tasks queued, and the CPU the worker and the Temporal server used.
Prints one JSON line.

    python -m bench.concurrency [--sessions 200] [--rate 20] [--tokens 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType

from bench.clock import latencies_ms, percentile, split_at_xadd
from bench.harness import bench_stack, cpu_seconds, rss_mb
from sessionflow.chunks import TextDeltaChunk
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.streams.assemble import assemble
from sessionflow.streams.reader import StreamEvent


async def main(sessions: int, rate: int, tokens: int) -> dict[str, Any]:
    async with bench_stack() as stack:
        worker = await stack.start_worker(rate, tokens)
        client = stack.client
        baseline_rss = rss_mb(worker.pid)
        run = uuid.uuid4().hex[:6]
        handles = [client.session(f"load-{run}-{i}", agent="clock") for i in range(sessions)]

        async def read(workflow_id: str) -> list[tuple[StreamEvent, int]]:
            return [(e, time.time_ns()) async for e in client.reader.read(workflow_id)]

        # Readers attach first (blocked in XREAD), so every chunk is received live.
        readers = [asyncio.create_task(read(h.workflow_id)) for h in handles]
        await asyncio.sleep(1.0)
        server = stack.servers.pid("temporal")
        assert server is not None
        cpu_before = {"worker": cpu_seconds(worker.pid), "temporal": cpu_seconds(server)}
        started, sent_ns = time.monotonic(), time.time_ns()
        results = await asyncio.gather(*(h.send("go") for h in handles))
        outcomes = await asyncio.wait_for(asyncio.gather(*(r.outcome for r in results)), 600)
        streams = await asyncio.wait_for(asyncio.gather(*readers), 60)
        elapsed = time.monotonic() - started
        peak_rss = rss_mb(worker.pid, "VmHWM")
        cpu = {
            "worker": cpu_seconds(worker.pid) - cpu_before["worker"],
            "temporal": cpu_seconds(server) - cpu_before["temporal"],
        }
        task_waits = [await first_task_wait(client, h.workflow_id) for h in handles]

        finished = sum(o.status is TurnStatus.FINISHED for o in outcomes)
        lost = duplicated = mismatched = 0
        latencies: list[float] = []
        first_chunk: list[float] = []
        # Once every session streams, the start-up burst (workflow tasks, activity
        # starts) is over: latencies from then on are the steady state.
        all_streaming = max(
            next(at for e, at in received if e.type == "text-delta") for received in streams
        )
        steady: list[float] = []
        # Split at the XADD (the entry id's clock): worker side, then reader side.
        to_redis: list[float] = []
        to_reader: list[float] = []
        for handle, received in zip(handles, streams, strict=True):
            events = [e for e, _ in received]
            deltas = [
                (e.chunk.delta, at) for e, at in received if isinstance(e.chunk, TextDeltaChunk)
            ]
            stamps = [stamp for delta, _ in deltas for stamp in filter(None, delta.split("|"))]
            lost += tokens - len(set(stamps))
            duplicated += len(stamps) - len(set(stamps))
            mismatched += assemble(events) != (await handle.history())[-1]
            latencies += latencies_ms(deltas, 0)
            for e, at in received:
                if isinstance(e.chunk, TextDeltaChunk):
                    for worker_side, reader_side in split_at_xadd(e.id, e.chunk.delta, at):
                        to_redis.append(worker_side)
                        to_reader.append(reader_side)
            steady += latencies_ms(deltas, all_streaming)
            first_chunk.append((deltas[0][1] - sent_ns) / 1e9 if deltas else float("nan"))
    return {
        "benchmark": "concurrency",
        "sessions": sessions,
        "tokens_per_second_per_session": rate,
        "tokens_per_session": tokens,
        "finished": finished,
        "chunks_lost": lost,
        "chunks_duplicated": duplicated,
        "reassembly_mismatches": mismatched,
        "chunk_latency_p50_ms": percentile(latencies, 50),
        "chunk_latency_p99_ms": percentile(latencies, 99),
        "emit_to_xadd_p99_ms": percentile(to_redis, 99),
        "xadd_to_receive_p99_ms": percentile(to_reader, 99),
        "steady_chunk_latency_p50_ms": percentile(steady, 50),
        "steady_chunk_latency_p99_ms": percentile(steady, 99),
        "steady_chunks": len(steady),
        "first_chunk_p50_s": round(percentile(first_chunk, 50), 2),
        "first_chunk_p99_s": round(percentile(first_chunk, 99), 2),
        "first_workflow_task_wait_p50_s": round(percentile(task_waits, 50), 2),
        "first_workflow_task_wait_p99_s": round(percentile(task_waits, 99), 2),
        "wall_seconds": round(elapsed, 1),
        "worker_cpu_seconds": round(cpu["worker"], 1),
        "temporal_server_cpu_seconds": round(cpu["temporal"], 1),
        "worker_rss_idle_mb": baseline_rss,
        "worker_peak_rss_mb": peak_rss,
    }


_TASK_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED


async def first_task_wait(client: SessionClient, workflow_id: str) -> float:
    """Seconds the session's first workflow task waited between being scheduled and a
    worker picking it up: the queue that builds when many sessions start at once."""
    events = (await client.temporal.get_workflow_handle(workflow_id).fetch_history()).events
    scheduled = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    )
    picked = next(e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    return (picked.event_time.ToNanoseconds() - scheduled.event_time.ToNanoseconds()) / 1e9


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rate", type=int, default=20, help="tokens per second per session")
    parser.add_argument("--tokens", type=int, default=100, help="tokens per session")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.sessions, args.rate, args.tokens))), flush=True)
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
