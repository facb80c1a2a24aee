"""A worker process serving the long-session agent (`bench.long_agent`), with the
payload store of `SESSIONFLOW_DATA_DIR` (transcripts go there), for
`bench.long_session`."""

from __future__ import annotations

import asyncio
import os

from bench.long_agent import FillerProvider, long_agent
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.logs import configure_logging
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker
from sessionflow.worker.main import stop_on_signals


async def main() -> None:
    configure_logging("warning", "json")
    settings = Settings.from_env()
    temporal = await connect_temporal(
        settings.temporal_address,
        settings=settings,
        external_storage=external_storage_from_settings(settings),
    )
    redis = await connect_redis(settings.redis_url)
    options = WorkerOptions(
        task_queue=settings.task_queue,
        sandbox_root=settings.sandboxes,
        providers=[FillerProvider()],
    )
    stop = stop_on_signals()
    async with build_worker(temporal, redis, [long_agent()], options):
        print("worker started", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
