"""Connecting to Temporal and Redis, with errors that say what to do."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from sessionflow.errors import ConnectionFailed


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime exporting SDK and Sessionflow metrics for Prometheus at
    `address` (host:port), under /metrics."""
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except Exception as err:
        raise ConnectionFailed(f"cannot serve metrics on {address}: {err}") from err


async def connect_temporal(
    address: str, namespace: str = "default", runtime: Runtime | None = None
) -> Client:
    try:
        return await Client.connect(
            address,
            namespace=namespace,
            data_converter=pydantic_data_converter,
            runtime=runtime,
        )
    except RuntimeError as err:
        raise ConnectionFailed(
            f"cannot reach Temporal at {address}: {err}. Is `sessionflow dev` running, "
            "or TEMPORAL_ADDRESS set?"
        ) from err


async def connect_redis(url: str) -> Redis:
    """A Redis client whose calls fail within seconds when Redis stops answering, so
    stream writers and readers notice and retry instead of hanging (the readers'
    blocking reads wait 2 s, well inside the socket timeout)."""
    redis = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=15)
    try:
        await redis.ping()
    except (RedisError, OSError) as err:
        await redis.aclose()
        raise ConnectionFailed(
            f"cannot reach Redis at {url}: {err}. Is `sessionflow dev` running, or REDIS_URL set?"
        ) from err
    return redis
