"""Running a worker process until it is told to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.runtime import Runtime

from sessionflow.agents.definition import Agent
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal, metrics_runtime
from sessionflow.logs import redact_url
from sessionflow.providers.base import ModelProvider
from sessionflow.providers.registry import providers_from_settings
from sessionflow.sandbox.base import SandboxBackend
from sessionflow.sandbox.registry import backend_from_settings
from sessionflow.storage import close_external_storage, external_storage_from_settings
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
    """Serve `agents` until `stop` is set, then finish in-flight work and exit.

    The sandbox backend and model providers come from their registries
    (`SESSIONFLOW_SANDBOX`, `SESSIONFLOW_PROVIDERS`), resolved before anything connects so
    that a bad value fails at once, and so does the payload store (`SESSIONFLOW_PAYLOAD_STORE`).
    """
    sandboxes = backend_from_settings(settings)
    providers = providers_from_settings(settings)
    payloads = external_storage_from_settings(settings)
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    temporal = await connect_temporal(
        settings.temporal_address,
        settings.temporal_namespace,
        runtime=runtime,
        settings=settings,
        external_storage=payloads,
    )
    redis = await connect_redis(settings.redis_url)
    try:
        await _serve(settings, agents, stop, temporal, redis, sandboxes, providers, runtime)
    finally:
        await redis.aclose()
        await close_external_storage(payloads)


async def _serve(
    settings: Settings,
    agents: Sequence[Agent],
    stop: asyncio.Event,
    temporal: Client,
    redis: Redis,
    sandboxes: SandboxBackend,
    providers: Sequence[ModelProvider],
    runtime: Runtime | None,
) -> None:
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
        providers=providers,
        sandboxes=sandboxes,
    )
    async with build_worker(temporal, redis, agents, options):
        log.info(
            "worker started",
            task_queue=settings.task_queue,
            agents=[a.name for a in agents],
            sandbox=sandboxes.name,
            sandbox_isolation=getattr(sandboxes, "effective_isolation", None),
            providers=sorted(p.name for p in providers),
            metrics=f"http://{settings.metrics_address}/metrics" if runtime else None,
            temporal=settings.temporal_address,
            redis=redact_url(settings.redis_url),
            payload_store=settings.payloads.url,
        )
        await stop.wait()
        log.info("worker stopping")
