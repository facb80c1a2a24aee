"""Running a worker process until it is told to stop."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Interceptor

from sessionflow.agents.definition import Agent
from sessionflow.agents.mcp_connections import close_mcp_connections
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.errors import SessionflowError, WorkerUnavailable
from sessionflow.logs import redact_url
from sessionflow.providers.base import ModelProvider
from sessionflow.providers.registry import providers_from_settings
from sessionflow.sandbox.base import SandboxBackend
from sessionflow.sandbox.registry import backend_from_settings
from sessionflow.storage import close_external_storage, external_storage_from_settings
from sessionflow.tracing import flush_tracing, tracing_from_settings
from sessionflow.worker.build import MakeCurrent, SessionWorker, WorkerOptions, build_worker
from sessionflow.worker.metrics_endpoint import metrics_endpoint

log = structlog.get_logger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for a graceful shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(
    settings: Settings,
    agents: Sequence[Agent],
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    make_current: MakeCurrent = "first",
) -> None:
    """Serve `agents` until `stop` is set, then finish in-flight work and exit.

    The worker joins the deployment `SESSIONFLOW_DEPLOYMENT` as build
    `SESSIONFLOW_BUILD_ID` (`sessionflow.worker.versions`); `make_current` says whether
    it makes that build current once it polls (by default, if the deployment has none).

    Each agent's sessions come on its own task queue (see `sessionflow.worker.build`);
    `ready` is set, and "worker started" logged, once the Temporal server has seen this
    process poll all of them.

    The sandbox backend and model providers come from their registries
    (`SESSIONFLOW_SANDBOX`, `SESSIONFLOW_PROVIDERS`), resolved before anything connects so
    that a bad value fails at once, and so does the payload store (`SESSIONFLOW_PAYLOAD_STORE`).
    """
    sandboxes = backend_from_settings(settings)
    providers = providers_from_settings(settings)
    payloads = external_storage_from_settings(settings)
    tracing = tracing_from_settings(settings)
    metrics = metrics_endpoint(settings)
    runtime, metrics_address = metrics if metrics else (None, None)
    temporal = await connect_temporal(
        settings.temporal_address,
        settings.temporal_namespace,
        runtime=runtime,
        settings=settings,
        external_storage=payloads,
    )
    redis = await connect_redis(settings.redis_url)
    try:
        await _serve(
            settings,
            agents,
            stop,
            ready,
            temporal,
            redis,
            sandboxes,
            providers,
            metrics_address,
            make_current,
            tracing,
        )
    finally:
        flush_tracing()
        # MCP servers the tools talked to: their stdio processes end with the worker.
        await close_mcp_connections()
        await redis.aclose()
        await close_external_storage(payloads)


async def _serve(
    settings: Settings,
    agents: Sequence[Agent],
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    temporal: Client,
    redis: Redis,
    sandboxes: SandboxBackend,
    providers: Sequence[ModelProvider],
    metrics_address: str | None,
    make_current: MakeCurrent,
    tracing: Interceptor | None,
) -> None:
    options = WorkerOptions.from_settings(
        settings, providers=providers, sandboxes=sandboxes, make_current=make_current
    )
    options.tracing = tracing
    async with build_worker(temporal, redis, agents, options) as worker:
        await _polling(worker, settings)
        current = await worker.claimed()
        freeze_startup_heap()
        log.info(
            "worker started",
            task_queues=worker.task_queues,
            deployment=worker.version.deployment_name,
            build_id=worker.version.build_id,
            # Not current: this build serves the sessions pinned to it, and new sessions
            # once `sessionflow deploy --build-id` makes it current (or ramps it).
            current=current,
            role=worker.role.value,
            agents=[a.name for a in agents],
            sandbox=sandboxes.name,
            sandbox_isolation=getattr(sandboxes, "effective_isolation", None),
            providers=sorted(p.name for p in providers),
            metrics=f"http://{metrics_address}/metrics" if metrics_address else None,
            temporal=settings.temporal_address,
            redis=redact_url(settings.redis_url),
            payload_store=settings.payloads.url,
        )
        if ready is not None:
            ready.set()
        await _until(stop, worker)
        log.info("worker stopping")


def freeze_startup_heap() -> None:
    """Keep what start-up built (imported modules, the SDK, clients: most of the heap)
    out of every later garbage collection. A full collection of it takes 80-150 ms,
    holding the GIL, and stalls every stream of the process while it runs: a worker or
    gateway that streams tokens pays it at random, as a latency spike (BENCHMARKS.md,
    "Stream latency"). Cyclic garbage of the start-up is collected first, so none is
    kept for good."""
    gc.collect()
    gc.freeze()


# How long the server may take to see a new worker's polls before it is called broken.
POLLING_TIMEOUT = 60.0


async def _polling(worker: SessionWorker, settings: Settings) -> None:
    try:
        await worker.wait_polling(POLLING_TIMEOUT)
    except RPCError as err:  # e.g. an API key that may poll but not describe queues
        log.warning("cannot confirm the worker polls", error=err.message)
    except TimeoutError:
        raise WorkerUnavailable(
            f"the worker did not start polling {', '.join(worker.task_queues)} within "
            f"{POLLING_TIMEOUT:g} s (Temporal at {settings.temporal_address})"
        ) from None
    except SessionflowError:
        raise
    except Exception as err:  # Temporal's own, e.g. no such namespace: one line
        raise WorkerUnavailable(
            f"the worker could not start: {type(err).__name__}: {' '.join(str(err).split())}"
        ) from err


async def _until(stop: asyncio.Event, worker: SessionWorker) -> None:
    """Wait for `stop`, or raise what stopped the worker first."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({stopping, worker.running}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if stop.is_set():
        return
    try:
        worker.running.result()
    except SessionflowError:
        raise
    except Exception as err:  # Temporal's own: say it in one line
        raise WorkerUnavailable(f"the worker stopped: {type(err).__name__}: {err}") from err
    raise WorkerUnavailable("the worker stopped polling by itself")
