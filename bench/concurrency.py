"""Concurrency: N sessions streaming at once on one worker process.

Every session's turn must finish, every delta the clock model emitted must reach its
reader (none lost, none twice), and each reader's reassembled message must equal the
session's history. Reports chunk latency (model emit -> reader receive) and the
worker's peak RSS, and where a start-up burst spends its time: how long sessions'
first workflow tasks queued, and the CPU the worker and the Temporal server used.

Beside it, on the same server and in the same run (first, so the sessions' streams do
not load it), the baseline: as many minimal signal-with-start workflows, each running
one activity (`bench.start_baseline`), sent at once; send -> activity start is the
least a burst of starts costs on this server. Twice: with the SDK's default pollers
(raw Temporal as it ships: the target's reference) and with autoscaling workflow
pollers, as Sessionflow's worker has. The target (issue 16): sessions' send -> first
chunk p99 within 1.5x of the baseline's send -> activity start p99.
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

from bench import start_baseline
from bench.clock import latencies_ms, percentile, split_at_xadd
from bench.harness import BenchStack, bench_stack, cpu_seconds, rss_mb, stop_worker
from sessionflow.chunks import TextDeltaChunk
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.streams.assemble import assemble
from sessionflow.streams.reader import StreamEvent


async def main(sessions: int, rate: int, tokens: int) -> dict[str, Any]:
    async with bench_stack() as stack:
        baseline = await start_burst_baseline(stack, sessions)
        await asyncio.sleep(2.0)  # the server finishes the baseline's closing work
        tuned = await start_burst_baseline(stack, sessions, pollers="autoscaling")
        await asyncio.sleep(2.0)
        worker = await stack.start_worker(rate, tokens)
        client = stack.client
        baseline_rss = rss_mb(worker.pid)
        run = uuid.uuid4().hex[:6]
        handles = [client.agent("clock").session(f"load-{run}-{i}") for i in range(sessions)]

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
        times = [await history_times(client, h.workflow_id) for h in handles]
        task_waits = [wait for wait, _ in times]
        first_step = [(started - sent_ns) / 1e9 for _, started in times]

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
    first_chunk_p99 = percentile(first_chunk, 99)
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
        "first_chunk_p99_s": round(first_chunk_p99, 2),
        "first_model_step_start_p50_s": round(percentile(first_step, 50), 2),
        "first_model_step_start_p99_s": round(percentile(first_step, 99), 2),
        "baseline_first_activity_p50_s": round(baseline["first_activity_p50_s"], 2),
        "baseline_first_activity_p99_s": round(baseline["first_activity_p99_s"], 2),
        "first_chunk_p99_over_baseline_p99": round(
            first_chunk_p99 / baseline["first_activity_p99_s"], 2
        ),
        "baseline_autoscaling_first_activity_p99_s": round(tuned["first_activity_p99_s"], 2),
        "first_chunk_p99_over_baseline_autoscaling_p99": round(
            first_chunk_p99 / tuned["first_activity_p99_s"], 2
        ),
        "first_workflow_task_wait_p50_s": round(percentile(task_waits, 50), 2),
        "first_workflow_task_wait_p99_s": round(percentile(task_waits, 99), 2),
        "wall_seconds": round(elapsed, 1),
        "worker_cpu_seconds": round(cpu["worker"], 1),
        "temporal_server_cpu_seconds": round(cpu["temporal"], 1),
        "worker_rss_idle_mb": baseline_rss,
        "worker_peak_rss_mb": peak_rss,
        "baseline": baseline,
        "baseline_autoscaling": tuned,
    }


async def start_burst_baseline(
    stack: BenchStack, count: int, pollers: str = "default"
) -> dict[str, Any]:
    """`count` minimal signal-with-start workflows sent at once, each running one
    activity: send -> activity start, on this server, with its own worker process
    (`pollers`: "default", the SDK's, or "autoscaling")."""
    worker = await stack.start_worker(0, 0, module="bench.start_baseline", BENCH_POLLERS=pollers)
    temporal = stack.client.temporal
    server = stack.servers.pid("temporal")
    assert server is not None
    cpu_before = {"worker": cpu_seconds(worker.pid), "temporal": cpu_seconds(server)}
    run = uuid.uuid4().hex[:6]
    started, sent_ns = time.monotonic(), time.time_ns()
    handles = await asyncio.gather(
        *(
            temporal.start_workflow(
                start_baseline.StartBaseline.run,
                id=f"baseline-{run}-{i}",
                task_queue=start_baseline.TASK_QUEUE,
                start_signal=start_baseline.SIGNAL,
                start_signal_args=["go"],
            )
            for i in range(count)
        )
    )
    activity_starts = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 600)
    elapsed = time.monotonic() - started
    cpu = {
        "worker": cpu_seconds(worker.pid) - cpu_before["worker"],
        "temporal": cpu_seconds(server) - cpu_before["temporal"],
    }
    await stop_worker(worker)
    waits = [(await history_times(stack.client, h.id))[0] for h in handles]
    delays = [(at - sent_ns) / 1e9 for at in activity_starts]
    return {
        "workflows": count,
        "pollers": pollers,
        "first_activity_p50_s": percentile(delays, 50),
        "first_activity_p99_s": percentile(delays, 99),
        "first_workflow_task_wait_p50_s": round(percentile(waits, 50), 2),
        "first_workflow_task_wait_p99_s": round(percentile(waits, 99), 2),
        "wall_seconds": round(elapsed, 1),
        "worker_cpu_seconds": round(cpu["worker"], 1),
        "temporal_server_cpu_seconds": round(cpu["temporal"], 1),
    }


_TASK_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED


async def history_times(client: SessionClient, workflow_id: str) -> tuple[float, int]:
    """From a workflow's history: the seconds its first workflow task waited between
    being scheduled and a worker picking it up (the queue that builds when many
    workflows start at once), and when (ns) its first activity started."""
    events = (await client.temporal.get_workflow_handle(workflow_id).fetch_history()).events

    def first(kind: EventType.ValueType) -> int:
        return next(e for e in events if e.event_type == kind).event_time.ToNanoseconds()

    wait = (first(_TASK_STARTED) - first(_TASK_SCHEDULED)) / 1e9
    return wait, first(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rate", type=int, default=20, help="tokens per second per session")
    parser.add_argument("--tokens", type=int, default=100, help="tokens per session")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.sessions, args.rate, args.tokens))), flush=True)
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
