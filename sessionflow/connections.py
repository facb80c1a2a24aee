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


# Every live stream reader holds a connection (it blocks in XREAD), and so does every
# streaming step's write in flight: redis-py's default pool of 100 made the 101st
# reader of a gateway, or the 101st concurrent step of a worker, fail with "Too many
# connections". Redis's own default limit is 10,000 clients. A `max_connections=`
# query parameter in the URL overrides this.
REDIS_MAX_CONNECTIONS = 10_000


def redis_client(url: str) -> Redis:
    """A Redis client whose calls fail within seconds when Redis stops answering, so
    stream writers and readers notice and retry instead of hanging (the readers'
    blocking reads wait 2 s, well inside the socket timeout)."""
    return Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=15, max_connections=REDIS_MAX_CONNECTIONS
    )


async def connect_redis(url: str) -> Redis:
    """`redis_client`, checked with a ping so a wrong URL fails with advice."""
    redis = redis_client(url)
    try:
        await redis.ping()
    except (RedisError, OSError) as err:
        await redis.aclose()
        raise ConnectionFailed(
            f"cannot reach Redis at {url}: {err}. Is `sessionflow dev` running, or REDIS_URL set?"
        ) from err
    return redis
