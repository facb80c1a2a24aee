"""Connecting to Temporal and Redis, with errors that say what to do (and no password)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, Interceptor
from temporalio.common import WorkerDeploymentVersion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, ExternalStorage
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from sessionflow import bridge_exit
from sessionflow.config import Settings
from sessionflow.errors import ConnectionFailed, InvalidInput
from sessionflow.logs import redact_url, remember_secret, remember_url_password


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime exporting SDK and Sessionflow metrics for Prometheus at
    `address` (host:port), under /metrics."""
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except Exception as err:
        raise ConnectionFailed(f"cannot serve metrics on {address}: {err}") from err


def _pem(setting: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInput(f"{setting}={path} cannot be read ({err.strerror or err})") from None
    if b"-----BEGIN " not in data:
        raise InvalidInput(f"{setting}={path} is not a PEM file")
    return data


def temporal_tls(settings: Settings) -> TLSConfig | None:
    """The TLS a connection to Temporal uses, from the `TEMPORAL_TLS*` settings and
    `TEMPORAL_API_KEY`; None for plaintext (the local stack).

    TLS is on when `TEMPORAL_TLS` says so, or, unset, when any TLS file, a server name
    or an API key is set: an API key is a bearer credential and Temporal Cloud takes it
    over TLS only, so `TEMPORAL_TLS=off` with one is refused. Files are read here, so a
    missing or unreadable one fails at once with a one-line `InvalidInput`.
    """
    files = {
        "TEMPORAL_TLS_CA": settings.temporal_tls_ca,
        "TEMPORAL_TLS_CERT": settings.temporal_tls_cert,
        "TEMPORAL_TLS_KEY": settings.temporal_tls_key,
    }
    configured = [name for name, value in files.items() if value is not None]
    if settings.temporal_tls_server_name:
        configured.append("TEMPORAL_TLS_SERVER_NAME")
    enabled = settings.temporal_tls
    if enabled is None:
        enabled = bool(configured or settings.temporal_api_key)
    if not enabled:
        if settings.temporal_api_key:
            raise InvalidInput("TEMPORAL_API_KEY is only sent over TLS: unset TEMPORAL_TLS=off")
        if configured:
            raise InvalidInput(f"TEMPORAL_TLS=off contradicts {', '.join(configured)}")
        return None
    cert, key = settings.temporal_tls_cert, settings.temporal_tls_key
    if (cert is None) != (key is None):
        raise InvalidInput("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS)")
    ca = settings.temporal_tls_ca
    return TLSConfig(
        server_root_ca_cert=_pem("TEMPORAL_TLS_CA", ca) if ca else None,
        domain=settings.temporal_tls_server_name,
        client_cert=_pem("TEMPORAL_TLS_CERT", cert) if cert else None,
        client_private_key=_pem("TEMPORAL_TLS_KEY", key) if key else None,
    )


def data_converter(external_storage: ExternalStorage | None = None) -> DataConverter:
    """Pydantic's converter, storing payloads over the store's threshold in it (and
    reading references back) when `external_storage` is given."""
    if external_storage is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, external_storage=external_storage)


async def connect_temporal(
    address: str,
    namespace: str = "default",
    runtime: Runtime | None = None,
    *,
    settings: Settings | None = None,
    external_storage: ExternalStorage | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A client of the Temporal frontend at `address`; with `settings`, over the TLS
    and with the API key they configure (`temporal_tls`).

    `external_storage` is the payload store (`sessionflow.storage.
    external_storage_from_settings`): every worker and client of a namespace needs the
    same one, or payloads over its threshold fail (over 2 MiB, forever) or cannot be read.
    """
    tls = temporal_tls(settings) if settings else None
    api_key = settings.temporal_api_key if settings else None
    remember_secret(api_key)
    bridge_exit.install()
    try:
        return await Client.connect(
            address,
            namespace=namespace,
            data_converter=data_converter(external_storage),
            runtime=runtime,
            tls=tls if tls is not None else False,
            api_key=api_key,
            interceptors=interceptors,
        )
    except RuntimeError as err:
        over = " over TLS" if tls else ""
        raise ConnectionFailed(
            f"cannot reach Temporal at {address}{over}: {err}. Is `sessionflow dev` running, "
            "or TEMPORAL_ADDRESS set?"
        ) from err


# Every live stream reader holds a connection (it blocks in XREAD), and so does every
# streaming step's write in flight: redis-py's default pool of 100 made the 101st
# reader of a gateway, or the 101st concurrent step of a worker, fail with "Too many
# connections". Redis's own default limit is 10,000 clients. A `max_connections=`
# query parameter in the URL overrides this.
REDIS_MAX_CONNECTIONS = 10_000


# `redis+cluster://` and `rediss+cluster://` name any node of a Redis Cluster; redis-py
# takes the URL with the plain scheme.
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_node_url(url: str) -> str | None:
    """The URL of a cluster node as `RedisCluster.from_url` takes it, when `url` names a
    Redis Cluster (`redis+cluster://` or `rediss+cluster://`); None for a single Redis.
    A cluster has only database 0: any other is an `InvalidInput`."""
    scheme, sep, rest = url.strip().partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    if plain is None:
        return None
    try:
        database = urlsplit(url.strip()).path.strip("/")
    except ValueError:
        database = ""
    if database not in ("", "0"):
        raise InvalidInput(f"REDIS_URL: a Redis Cluster has only database 0, not /{database}")
    return f"{plain}://{rest}"


def redis_client(url: str) -> Redis:
    """A Redis client whose calls fail within seconds when Redis stops answering, so
    stream writers and readers notice and retry instead of hanging (the readers'
    blocking reads wait 2 s, well inside the socket timeout).

    For a `redis+cluster://` URL it is redis-py's `RedisCluster`: it learns the other
    nodes from the one named, sends each command to the primary of its key's slot,
    follows MOVED/ASK redirections and re-reads the topology after a failover. It
    retries a failed command itself only a few times, at once: stream writers and
    readers wait out a longer failover with their own backoff. (It is typed `Redis`
    because callers are; the code that talks to Redis, `sessionflow.streams`, is typed
    and checked against both clients.)
    """
    cluster_url = cluster_node_url(url)
    if cluster_url is not None:
        cluster = RedisCluster.from_url(
            cluster_url,
            socket_connect_timeout=5,
            socket_timeout=15,
            max_connections=REDIS_MAX_CONNECTIONS,  # per node
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), retries=3),
        )
        return cast(Redis, cluster)
    return Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=15, max_connections=REDIS_MAX_CONNECTIONS
    )


async def connect_redis(url: str) -> Redis:
    """`redis_client`, checked with a ping so a wrong URL fails with advice; a single-node
    URL (`redis://`) that reaches a node of a Redis Cluster is refused, since most keys
    would then answer MOVED."""
    remember_url_password(url)
    redis = redis_client(url)
    cluster = isinstance(redis, RedisCluster)
    try:
        await redis.ping()
        on_cluster_node = not cluster and await _cluster_enabled(redis)
    except (RedisError, RedisClusterException, OSError) as err:
        await redis.aclose()
        if cluster:
            advice = "Is REDIS_URL a node of the cluster (redis+cluster://:<password>@host:port)?"
        else:
            advice = (
                "Is `sessionflow dev` running, or REDIS_URL set (with the password: "
                "redis://:<password>@host:port/db)?"
            )
        raise ConnectionFailed(f"cannot reach Redis at {redact_url(url)}: {err}. {advice}") from err
    if on_cluster_node:
        await redis.aclose()
        raise InvalidInput(
            f"REDIS_URL {redact_url(url)} is a node of a Redis Cluster: write it "
            "redis+cluster://... (or rediss+cluster:// for TLS)"
        )
    return redis


async def _cluster_enabled(redis: Redis) -> bool:
    """Whether a single-node client reached a cluster node (False if INFO is refused,
    as some managed services do)."""
    try:
        info = await redis.info("cluster")
    except ResponseError:
        return False
    return bool(info.get("cluster_enabled"))


# What a server that no longer has the enhanced describe answers it with.
_NOT_OFFERED = (
    RPCStatusCode.UNIMPLEMENTED,
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.FAILED_PRECONDITION,
)


async def task_queue_pollers(
    client: Client,
    queue: str,
    kind: TaskQueueType.ValueType,
    versions: Sequence[WorkerDeploymentVersion] = (),
) -> set[str]:
    """The identities of the workers the server has seen poll `queue` for `kind` tasks:
    unversioned ones, those of `versions` (a worker asks for its own) and those of the
    queue's current and ramping builds (where new sessions go), on any of the queue's
    partitions; and whoever polled its root partition, of any build.

    The plain describe reads the root partition only, and a queue has several (four by
    default): a worker whose polls wait on another partition stays out of its sight for
    as long as another worker's polls take the root's place (two workers on one queue:
    the second was missed one time in three). The enhanced describe asks every
    partition, but lists only the builds it is asked for: by default, unversioned
    workers alone, so versioned workers were never seen by it. It is deprecated, so a
    server without it gets the plain one."""
    plain = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
        )
    )
    found = {poller.identity for poller in plain.pollers}
    routing = plain.versioning_info
    builds = [v.to_canonical_string() for v in versions]
    for field in ("current_deployment_version", "ramping_deployment_version"):
        if routing.HasField(field):
            version = getattr(routing, field)
            builds.append(f"{version.deployment_name}.{version.build_id}")
    try:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
                # A version named `<deployment>.<build id>` selects that deployment
                # version's pollers.
                versions=TaskQueueVersionSelection(build_ids=builds, unversioned=True),
                task_queue_types=[kind],
                report_pollers=True,
            )
        )
    except RPCError as err:
        if err.status not in _NOT_OFFERED:
            raise
        return found
    return found | {
        poller.identity
        for version in answer.versions_info.values()
        for found_kind, info in version.types_info.items()
        if found_kind == kind
        for poller in info.pollers
    }
