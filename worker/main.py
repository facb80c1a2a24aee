"""Running a worker process until it is told to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog

from sessionflow.agents.definition import Agent
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal, metrics_runtime
from sessionflow.errors import InvalidInput
from sessionflow.providers.anthropic import AnthropicProvider
from sessionflow.sandbox.e2b import E2BSandboxBackend
from sessionflow.streams.publisher import Retention
from sessionflow.worker.build import WorkerOptions, build_worker

log = structlog.get_logger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for a graceful shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(settings: Settings, agents: Sequence[Agent], stop: asyncio.Event) -> None:
    """Serve `agents` until `stop` is set, then finish in-flight work and exit."""
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    temporal = await connect_temporal(
        settings.temporal_address, settings.temporal_namespace, runtime=runtime
    )
    redis = await connect_redis(settings.redis_url)
    options = WorkerOptions(
        task_queue=settings.task_queue,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        sandbox_root=settings.sandboxes,
        retention=Retention(
            max_len=settings.stream_max_len, ttl_seconds=settings.stream_ttl_seconds
        ),
        context_ttl_seconds=settings.context_ttl_seconds,
        providers=[
            AnthropicProvider(
                max_tokens=settings.anthropic_max_tokens,
                thinking_budget=settings.anthropic_thinking_budget or None,
            )
        ],
    )
    if settings.sandbox_backend == "e2b":
        options.sandboxes = E2BSandboxBackend(
            template=settings.e2b_template, timeout_seconds=settings.e2b_timeout_seconds
        )
    elif settings.sandbox_backend != "local":
        raise InvalidInput(
            f"SESSIONFLOW_SANDBOX must be 'local' or 'e2b', not {settings.sandbox_backend!r}"
        )
    worker = build_worker(temporal, redis, agents, options)
    try:
        async with worker:
            log.info(
                "worker started",
                task_queue=settings.task_queue,
                agents=[a.name for a in agents],
                sandbox=settings.sandbox_backend,
                metrics=f"http://{settings.metrics_address}/metrics" if runtime else None,
                temporal=settings.temporal_address,
                redis=settings.redis_url,
            )
            await stop.wait()
            log.info("worker stopping")
    finally:
        await redis.aclose()
