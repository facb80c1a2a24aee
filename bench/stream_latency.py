"""Stream latency: model emit -> reader receive, through the client reader and the
gateway's SSE, beside a raw Redis XADD -> XREAD baseline on the same server.

Starts its own Temporal dev server and Redis-protocol server, worker processes
serving a clock model (each delta carries its emit time), and the gateway in
another process; then N concurrent sessions stream at a fixed token rate, once per
reader kind. Prints one JSON line of figures.

Each worker topology of `--roles` runs in turn, in the same run: `all`, one worker
process running workflows and activities (the top-level figures), and `split`, a
workflows-only and an activities-only process (`sessionflow worker --role`; the
figures under "split").

`all-notices-off` is `all` with SESSIONFLOW_INTERRUPT_NOTICES=off: steps heartbeat every
0.4 s, as they did before interrupts were announced through Redis. Each topology's
figures carry the Temporal server's CPU seconds while it streamed.

    python -m bench.stream_latency [--sessions 50] [--rate 20] [--tokens 100]
                                   [--roles all,split,all-notices-off]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.clock import latencies_ms, percentile, split_at_xadd
from bench.harness import cpu_seconds, wait_for_line
from sessionflow.cli.localstack import LocalStack, StackConfig, free_port
from sessionflow.client.client import SessionClient
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.logs import configure_logging

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-000001"


# Sessions start together; the first second includes that burst of activity starts.
STEADY_AFTER_NS = 1_000_000_000

Samples = list[tuple[list[tuple[str, int]], int]]  # per reader: (deltas received, attached)


def summary(samples: Samples) -> dict[str, Any]:
    every = [v for got, attached in samples for v in latencies_ms(got, attached)]
    steady = [v for got, at in samples for v in latencies_ms(got, at + STEADY_AFTER_NS)]
    return {
        "p50_ms": percentile(every, 50),
        "p99_ms": percentile(every, 99),
        "chunks": len(every),
        "steady_p50_ms": percentile(steady, 50),
        "steady_p99_ms": percentile(steady, 99),
    }


# Where the client reader's latency is spent, split at the XADD (the entry id's
# millisecond clock): before it is the worker's side, after it the reader's.
SPLIT: dict[str, list[float]] = {"emit_to_xadd": [], "xadd_to_receive": []}

# The worker processes of each topology, by SESSIONFLOW_WORKER_ROLE.
TOPOLOGIES = {
    "all": ("all",),
    "split": ("workflows", "activities"),
    # One process whose steps heartbeat every 0.4 s (SESSIONFLOW_INTERRUPT_NOTICES=off),
    # as before interrupts were announced through Redis: the heartbeat baseline.
    "all-notices-off": ("all",),
}


async def client_phase(client: SessionClient, sessions: int) -> Samples:
    run = uuid.uuid4().hex[:6]
    handles = [client.agent("clock").session(f"c-{run}-{i}") for i in range(sessions)]

    async def read(workflow_id: str) -> list[tuple[str, int]]:
        got: list[tuple[str, int]] = []
        async for event in client.reader.read(workflow_id):
            if event.type == "text-delta":
                received = time.time_ns()
                delta: str = event.chunk.delta  # type: ignore[attr-defined]
                got.append((delta, received))
                for worker_side, reader_side in split_at_xadd(event.id, delta, received):
                    SPLIT["emit_to_xadd"].append(worker_side)
                    SPLIT["xadd_to_receive"].append(reader_side)
        return got

    readers = [asyncio.create_task(read(h.workflow_id)) for h in handles]
    await asyncio.sleep(1.0)  # readers attached and blocked in XREAD
    attached = time.time_ns()
    await asyncio.gather(*(h.send("go") for h in handles))
    results = await asyncio.gather(*readers)
    return [(r, attached) for r in results]


async def sse_phase(url: str, sessions: int) -> Samples:
    run = uuid.uuid4().hex[:6]
    headers = {"authorization": f"Bearer {API_KEY}"}

    async def one(http: httpx.AsyncClient, i: int) -> tuple[list[tuple[str, int]], int]:
        sid = f"s-{run}-{i}"
        sent = await http.post(
            f"{url}/v1/sessions/{sid}/messages", json={"message": "go"}, headers=headers
        )
        sent.raise_for_status()
        got: list[tuple[str, int]] = []
        async with http.stream("GET", f"{url}/v1/sessions/{sid}/stream", headers=headers) as r:
            attached = time.time_ns()
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"text-delta"' in line:
                    got.append((json.loads(line[6:])["delta"], time.time_ns()))
        return got, attached

    limits = httpx.Limits(max_connections=sessions * 2, max_keepalive_connections=sessions * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        return list(await asyncio.gather(*(one(http, i) for i in range(sessions))))


async def raw_phase(redis_url: str, sessions: int, rate: int, tokens: int) -> Samples:
    redis = Redis.from_url(redis_url)
    await redis.delete(*(f"raw:{i}" for i in range(sessions)))

    async def read(key: str) -> list[tuple[str, int]]:
        got: list[tuple[str, int]] = []
        cursor = "0-0"
        while len(got) < tokens:
            response: Any = await redis.xread({key: cursor}, count=500, block=5000)
            for _stream, entries in response or ():
                for entry_id, fields in entries:
                    cursor = entry_id
                    got.append((fields[b"chunk"].decode(), time.time_ns()))
        return got

    readers = [asyncio.create_task(read(f"raw:{i}")) for i in range(sessions)]
    await asyncio.sleep(1.0)
    attached = time.time_ns()
    producer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.raw_producer", redis_url, str(sessions), str(rate),
        str(tokens), cwd=REPO,
    )  # fmt: skip
    results = await asyncio.gather(*readers)
    await producer.wait()
    await redis.aclose()
    return [(r, attached) for r in results]


def start_workers(topology: str, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "bench.clock_worker"]
    notices = "off" if topology.endswith("notices-off") else "on"
    return [
        subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "SESSIONFLOW_WORKER_ROLE": role, "SESSIONFLOW_INTERRUPT_NOTICES": notices},
        )
        for role in TOPOLOGIES[topology]
    ]


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.wait(30)


async def topology_phase(
    topology: str,
    env: dict[str, str],
    client: SessionClient,
    url: str,
    sessions: int,
    temporal_pid: int,
) -> dict[str, Any]:
    """Client reader and SSE figures with the workers of one topology, and the Temporal
    server's CPU seconds while they streamed."""
    workers = start_workers(topology, env)
    try:
        for worker in workers:
            await wait_for_line(worker, "worker started")
        await client_phase(client, 2)  # warm up the workers' caches
        for values in SPLIT.values():
            values.clear()
        cpu_before = cpu_seconds(temporal_pid)
        reader = await client_phase(client, sessions)
        sse = await sse_phase(url, sessions)
        server_cpu = cpu_seconds(temporal_pid) - cpu_before
    finally:
        stop(workers)
    figures: dict[str, Any] = {
        "client_reader": summary(reader),
        "gateway_sse": summary(sse),
        "temporal_server_cpu_seconds": round(server_cpu, 1),
    }
    for name, values in SPLIT.items():
        figures["client_reader"][f"{name}_p50_ms"] = percentile(values, 50)
        figures["client_reader"][f"{name}_p99_ms"] = percentile(values, 99)
    return figures


async def main(sessions: int, rate: int, tokens: int, roles: list[str]) -> dict[str, Any]:
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.on_free_ports(Path(tmp))
        gateway_port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TEMPORAL_ADDRESS": config.temporal_address,
            "REDIS_URL": config.redis_url,
            "SESSIONFLOW_TASK_QUEUE": "bench",
            "SESSIONFLOW_SANDBOX_ROOT": str(Path(tmp) / "sandboxes"),
            "BENCH_RATE": str(rate),
            "BENCH_TOKENS": str(tokens),
            "SESSIONFLOW_API_KEYS": f"{API_KEY}:bench",
            "SESSIONFLOW_DEFAULT_AGENT": "clock",
            "SESSIONFLOW_GATEWAY_PORT": str(gateway_port),
            "SESSIONFLOW_LOG_LEVEL": "warning",
        }
        async with LocalStack(config) as stack:
            temporal_pid = stack.pid("temporal")
            assert temporal_pid is not None
            gateway = subprocess.Popen(
                [sys.executable, "-m", "sessionflow", "gateway",
                 "--agents", "bench.clock:gateway_agent"], env=env, cwd=REPO,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                url = f"http://127.0.0.1:{gateway_port}"
                async with httpx.AsyncClient() as probe:
                    for _ in range(200):
                        try:
                            await probe.get(f"{url}/healthz")
                            break
                        except httpx.TransportError:
                            await asyncio.sleep(0.05)
                temporal = await connect_temporal(config.temporal_address)
                redis = await connect_redis(config.redis_url)
                client = SessionClient(temporal, redis, task_queue="bench")
                # The readers here stand for a client application: keep this harness's
                # start-up heap out of its collections, as the worker and gateway do
                # theirs, or one full collection (84 ms) lands in one phase, not another.
                gc.collect()
                gc.freeze()
                measured = {
                    topology: await topology_phase(
                        topology, env, client, url, sessions, temporal_pid
                    )
                    for topology in roles
                }
                raw = await raw_phase(config.redis_url, sessions, rate, tokens)
                await redis.aclose()
            finally:
                stop([gateway])
    figures: dict[str, Any] = {
        "benchmark": "stream_latency",
        "sessions": sessions,
        "tokens_per_second_per_session": rate,
        "tokens_per_session": tokens,
        "raw_redis": summary(raw),
    }
    for topology, found in measured.items():
        for reader in ("client_reader", "gateway_sse"):
            for view in ("p99_ms", "steady_p99_ms"):
                ratio = found[reader][view] / figures["raw_redis"][view]
                found[f"{reader}_{view.removesuffix('_ms')}_over_raw"] = round(ratio, 2)
        # The single-process topology's figures stay at the top, as before `split`.
        if topology == "all":
            figures.update(found)
        else:
            figures[topology] = found
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=int, default=20, help="tokens per second per session")
    parser.add_argument("--tokens", type=int, default=100, help="tokens per session")
    parser.add_argument(
        "--roles",
        default="all,split",
        help="worker topologies to measure, in order: all (one process), split "
        "(a workflows-only and an activities-only process), all-notices-off (one process "
        "whose steps heartbeat every 0.4 s, as before interrupt notices)",
    )
    args = parser.parse_args()
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    if not roles or not set(roles) <= set(TOPOLOGIES):
        parser.error(f"--roles takes a comma-separated list of {', '.join(TOPOLOGIES)}")
    figures = asyncio.run(main(args.sessions, args.rate, args.tokens, roles))
    print(json.dumps(figures), flush=True)
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
