"""A worker process serving the clock agent, for the benchmarks.

Environment: TEMPORAL_ADDRESS, REDIS_URL, SESSIONFLOW_TASK_QUEUE, BENCH_RATE,
BENCH_TOKENS, plus the usual SESSIONFLOW_* settings (SESSIONFLOW_WORKER_ROLE among them).
"""

from __future__ import annotations

import asyncio
import os

from bench.clock import ClockProvider, clock_agent
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.logs import configure_logging
from sessionflow.worker.build import WorkerOptions, build_worker
from sessionflow.worker.main import freeze_startup_heap, stop_on_signals


async def main() -> None:
    configure_logging("warning", "json")
    settings = Settings.from_env()
    temporal = await connect_temporal(settings.temporal_address, settings=settings)
    redis = await connect_redis(settings.redis_url)
    agent = clock_agent(int(os.environ["BENCH_RATE"]), int(os.environ["BENCH_TOKENS"]))
    options = WorkerOptions(
        task_queue=settings.task_queue,
        role=settings.worker_role,
        interrupt_notices=settings.interrupt_notices,
        sandbox_root=settings.sandboxes,
        providers=[ClockProvider()],
        max_concurrent_activities=1000,
        max_cached_workflows=settings.max_cached_workflows,
    )
    stop = stop_on_signals()
    async with build_worker(temporal, redis, [agent], options):  # type: ignore[list-item]
        freeze_startup_heap()  # as `sessionflow worker` does
        print("worker started", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
