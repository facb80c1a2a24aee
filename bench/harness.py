"""What the load benchmarks share: a throwaway stack, clock-model worker processes,
and the figures read from them (peak and current RSS from /proc).

Workers run in their own processes, as in production, so their memory can be read
and they can be SIGKILLed without taking the benchmark with them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.logs import configure_logging

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchStack:
    servers: LocalStack
    config: StackConfig
    root: Path
    client: SessionClient
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    async def start_worker(
        self, rate: int, tokens: int, module: str = "bench.clock_worker", **env: str
    ) -> subprocess.Popen[str]:
        """A `bench.clock_worker` process streaming `tokens` deltas at `rate` per second
        (or another worker `module`); returns once it polls. `env` adds SESSIONFLOW_*
        settings."""
        environment = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TEMPORAL_ADDRESS": self.config.temporal_address,
            "REDIS_URL": self.config.redis_url,
            "SESSIONFLOW_TASK_QUEUE": "bench",
            "SESSIONFLOW_SANDBOX_ROOT": str(self.root / "sandboxes"),
            "SESSIONFLOW_METRICS_ADDRESS": "",
            "BENCH_RATE": str(rate),
            "BENCH_TOKENS": str(tokens),
            **env,
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", module], env=environment, cwd=REPO,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.workers.append(worker)
        await wait_for_line(worker, "worker started")
        # Keep reading its output, so a chatty worker never blocks on a full pipe.
        threading.Thread(target=_drain, args=(worker,), daemon=True).start()
        return worker


@asynccontextmanager
async def bench_stack() -> AsyncIterator[BenchStack]:
    """A Temporal dev server and Redis on free ports, and a client; stops them all."""
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.on_free_ports(Path(tmp))
        async with LocalStack(config) as servers:
            temporal = await connect_temporal(config.temporal_address)
            redis = await connect_redis(config.redis_url)
            stack = BenchStack(
                servers, config, Path(tmp), SessionClient(temporal, redis, task_queue="bench")
            )
            try:
                yield stack
            finally:
                for worker in stack.workers:
                    await stop_worker(worker)
                await redis.aclose()


async def stop_worker(worker: subprocess.Popen[str]) -> None:
    """SIGTERM a worker process and wait for it to exit (SIGKILL after 30 s)."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        await asyncio.get_running_loop().run_in_executor(None, worker.wait, 30)
    except subprocess.TimeoutExpired:
        worker.kill()


async def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"process did not print {text!r}")


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for _line in proc.stdout:
        pass


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_counts(pid: int) -> dict[str, int]:
    """A process's I/O so far (/proc/<pid>/io): `syscw` write system calls (files and
    sockets), `write_bytes` bytes it sent to storage (for the Temporal dev server,
    its SQLite database and write-ahead log)."""
    counts = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        counts[key] = int(value)
    return counts


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """A process's resident memory in MiB: `VmRSS` now, or `VmHWM` (its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field_name} for process {pid}")
