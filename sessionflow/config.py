"""Settings, read from the environment once, with defaults for the local stack; and the
resolution of the `module:attr` import paths some of them hold.

| variable                      | default                     |
| ----------------------------- | --------------------------- |
| TEMPORAL_ADDRESS              | 127.0.0.1:7233              |
| TEMPORAL_NAMESPACE            | default                     |
| TEMPORAL_UI_URL               | http://127.0.0.1:8233       |
| SESSIONFLOW_TASK_QUEUE        | sessionflow (+ .<agent>)    |
| SESSIONFLOW_DEPLOYMENT        | sessionflow (Worker Deployment name) |
| SESSIONFLOW_BUILD_ID          | <version>-<source hash> (sessionflow.worker.versions) |
| SESSIONFLOW_WORKER_ROLE       | all (or workflows, activities) |
| SESSIONFLOW_INTERRUPT_NOTICES | on (off: steps heartbeat every 0.4 s) |
| REDIS_URL                     | redis://127.0.0.1:6379/0 *  |
| SESSIONFLOW_TENANT            | dev with the local stack *, else none |
| TEMPORAL_TLS                  | on if any TLS_* or API key  |
| TEMPORAL_TLS_CA               | the system's root CAs       |
| TEMPORAL_TLS_CERT, _TLS_KEY   | none (mTLS client pair)     |
| TEMPORAL_TLS_SERVER_NAME      | the address's host          |
| TEMPORAL_API_KEY              | none (Temporal Cloud)       |
| SESSIONFLOW_DATA_DIR          | .sessionflow                |
| SESSIONFLOW_SANDBOX_ROOT      | <data dir>/sandboxes        |
| SESSIONFLOW_STREAM_MAXLEN     | 10000 (entries per session) |
| SESSIONFLOW_STREAM_TTL        | 604800 (seconds after idle) |
| SESSIONFLOW_STREAM_CALL_BUDGET | 262144 (progress bytes per tool call) |
| SESSIONFLOW_STREAM_TURN_BUDGET | 1048576 (progress bytes per turn) |
| SESSIONFLOW_CONTEXT_TTL       | 86400 (seconds after use)   |
| SESSIONFLOW_IDLE_TTL          | 604800 (s without a message before a session closes; off) |
| SESSIONFLOW_METRICS_ADDRESS   | 127.0.0.1:9464 or next free ("" = off) |
| SESSIONFLOW_MAX_CONCURRENT_ACTIVITIES     | 200             |
| SESSIONFLOW_MAX_CONCURRENT_WORKFLOW_TASKS | 100             |
| SESSIONFLOW_MAX_CACHED_WORKFLOWS          | 1000            |
| SESSIONFLOW_SANDBOX           | local (or e2b, module:attr) |
| SESSIONFLOW_SANDBOX_ISOLATION | bubblewrap (or none)        |
| SESSIONFLOW_SANDBOX_NETWORK   | none (or egress)            |
| SESSIONFLOW_SANDBOX_UID       | 1900000000 (first host uid under root) |
| SESSIONFLOW_SANDBOX_UIDS      | 65536 (host uids, one per sandbox) |
| SESSIONFLOW_SANDBOX_LIMITS    | kernel (or best-effort)     |
| SESSIONFLOW_SANDBOX_MEMORY_MB | 4096 (per sandbox)          |
| SESSIONFLOW_SANDBOX_CPU_PERCENT | 100 (per sandbox)         |
| SESSIONFLOW_SANDBOX_DISK_MB   | 2048 (per workspace)        |
| SESSIONFLOW_SANDBOX_MAX_PROCESSES   | 512 (per sandbox)     |
| SESSIONFLOW_SANDBOX_MAX_MEMORY_MB   | 4096 (per process)    |
| SESSIONFLOW_SANDBOX_MAX_CPU_SECONDS | 600 (per process)     |
| SESSIONFLOW_SANDBOX_MAX_FILE_MB     | 1024 (per file)       |
| SESSIONFLOW_SANDBOX_MAX_OPEN_FILES  | 4096 (per process)    |
| SESSIONFLOW_SANDBOX_TMP_MB          | 256 (the /tmp tmpfs)  |
| SESSIONFLOW_PROVIDERS         | none (module:attr,...)      |
| SESSIONFLOW_E2B_TEMPLATE      | E2B's default template      |
| SESSIONFLOW_E2B_TIMEOUT       | 3600 (sandbox lifetime, s)  |
| SESSIONFLOW_ANTHROPIC_MAX_TOKENS      | 8192                |
| SESSIONFLOW_ANTHROPIC_THINKING_BUDGET | 0 (no thinking)     |
| SESSIONFLOW_LOG_FORMAT        | console on a TTY, else json |
| SESSIONFLOW_LOG_LEVEL         | info                        |
| SESSIONFLOW_PAYLOAD_STORE     | file://<data dir>/payloads  |
| SESSIONFLOW_PAYLOAD_THRESHOLD | 262144 (bytes; 0 to 1 MiB)  |
| AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL | AWS (s3:// stores)  |
| AWS_REGION, AWS_DEFAULT_REGION        | boto's chain (s3://) |
| AWS_ACCESS_KEY_ID, _SECRET_ACCESS_KEY, AWS_SESSION_TOKEN | boto's chain (s3://) |

* with the local stack's password when REDIS_URL is unset and `<data dir>/redis.password`
exists; SESSIONFLOW_TENANT is then `dev`, so the CLI names sessions `dev:<id>` as the
gateway does for `sessionflow dev`'s development key (its web page lists them).
SESSIONFLOW_TENANT="" means no tenant: session ids are used as given.

A bad value raises `ConfigError` (an `InvalidInput`): one line naming the variable and
what it takes (the command line prints it and exits with status 2).

Payloads of at least SESSIONFLOW_PAYLOAD_THRESHOLD bytes (activity inputs and results,
signals, queries' and updates' answers, continue-as-new input) go to the payload store
and Temporal records a reference (see sessionflow.storage): `file://<dir>` for one
machine (the local stack), `s3://<bucket>[/<prefix>]` for anything else.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from sessionflow.errors import InvalidInput
from sessionflow.ids import TENANT

# The local stack's Redis password, in the data directory (see sessionflow.cli.localstack).
LOCAL_REDIS_PASSWORD_FILE = "redis.password"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
# The tenant of `sessionflow dev`'s development key (sessionflow.cli.dev.DEV_API_KEY).
LOCAL_TENANT = "dev"


class WorkerRole(StrEnum):
    """What a worker process runs. Workflow tasks hold the GIL while they run; in a
    process of their own they cannot stall the activities streaming tokens (see
    BENCHMARKS.md, "Stream latency"). A workflows-only worker still runs its sessions'
    local activities (short Redis and payload store writes), as Temporal requires."""

    ALL = "all"
    WORKFLOWS = "workflows"
    ACTIVITIES = "activities"


def local_redis_password(data_dir: Path) -> str | None:
    """The password `sessionflow dev` made for the stack in `data_dir`, if there is one."""
    try:
        return (data_dir / LOCAL_REDIS_PASSWORD_FILE).read_text().strip() or None
    except OSError:
        return None


class ConfigError(InvalidInput):
    """A setting whose value cannot be used. The message is one line that names the
    variable and says what it takes; it never repeats a value that may hold a secret."""


def _choice(name: str, env: Mapping[str, str], fallback: str, options: tuple[str, ...]) -> str:
    value = (env.get(name) or fallback).strip().lower()
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {env.get(name)!r}")
    return value


def _switch(name: str, raw: str | None) -> bool | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def env_integer(
    name: str, env: Mapping[str, str], fallback: int, low: int, high: int | None = None
) -> int:
    """The whole number in variable `name` (`fallback` when unset or empty), from `low`
    to `high`; else a `ConfigError` naming the variable and the range."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return fallback
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number {span}, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be a whole number {span}, got {raw!r}")
    return value


def parse_address(raw: str, name: str, example: str = "127.0.0.1:7233") -> tuple[str, int]:
    """`host:port` (`[v6 address]:port` too) as (host, port)."""
    host, sep, port = raw.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{name} must be host:port (e.g. {example}), got {raw!r}")
    return host, int(port)


# `redis+cluster://` (`rediss+cluster://`): any node of a Redis Cluster (connections).
_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def check_redis_url(url: str, name: str = "REDIS_URL") -> str:
    """`url` if redis-py can use it; the message never shows it (it holds the password)."""
    shape = (
        f"{name} must look like redis://[:<password>@]<host>:<port>/<db> "
        "(rediss:// for TLS, unix:///<socket path>, or redis+cluster://[:<password>@]"
        "<host>:<port> for any node of a Redis Cluster)"
    )
    try:
        parts = urlsplit(url.strip())
        port, path = parts.port, parts.path
    except ValueError:  # a port that is not a number
        raise ConfigError(shape) from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise ConfigError(shape)
    if parts.scheme == "unix":
        if not path:
            raise ConfigError(shape)
        return url
    database = path.strip("/")
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise ConfigError(shape)
    if database and not database.isdigit():
        raise ConfigError(f"{name}: the database after the last '/' must be a number")
    if parts.scheme.endswith("+cluster") and database not in ("", "0"):
        raise ConfigError(f"{name}: a Redis Cluster has only database 0")
    return url


def parse_tenant(raw: str, name: str = "SESSIONFLOW_TENANT") -> str | None:
    """A tenant name (letters, digits, '_' or '-', at most 64), or None for ""."""
    value = raw.strip()
    if not value:
        return None
    if not TENANT.match(value):
        raise ConfigError(
            f"{name} must be 1-64 letters, digits, '_' or '-' (or empty for none), got {raw!r}"
        )
    return value


def _url(name: str, env: Mapping[str, str], fallback: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return fallback
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return raw.rstrip("/")


# A task queue's name, and an agent's after it, must fit Temporal's limit of 1000.
_TASK_QUEUE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")


def agent_task_queue(base: str, agent: str) -> str:
    """The task queue of `agent`'s sessions: `<base>.<agent>`, polled only by workers
    that serve the agent. The client starts each session there, and the workflow's
    activities and continue-as-new stay on the queue its run started on."""
    return f"{base}.{agent}"


# Temporal names a version `<deployment>.<build id>`: the deployment name has no '.'.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_BUILD_ID = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")


def parse_deployment_name(raw: str, name: str = "SESSIONFLOW_DEPLOYMENT") -> str:
    """A Worker Deployment name: 1-100 letters, digits, '_' or '-'."""
    if not _DEPLOYMENT.match(raw):
        raise ConfigError(f"{name} must be 1-100 letters, digits, '_' or '-', got {raw!r}")
    return raw


def parse_build_id(raw: str, name: str = "SESSIONFLOW_BUILD_ID") -> str | None:
    """A build id (letters, digits, '_', '-', '.', '+'; at most 200), or None for ""."""
    value = raw.strip()
    if not value:
        return None
    if not _BUILD_ID.match(value):
        raise ConfigError(
            f"{name} must be 1-200 letters, digits, '_', '-', '.' or '+', got {raw!r}"
        )
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Temporal refuses payloads over 2 MiB: a threshold near that would let payloads it
# refuses stay inline.
MAX_PAYLOAD_THRESHOLD = 1024 * 1024
DEFAULT_PAYLOAD_THRESHOLD = 256 * 1024
PAYLOADS_DIR = "payloads"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class PayloadStore:
    """Where large payloads go: a directory (`kind == "file"`) or an S3 bucket and key
    prefix (`kind == "s3"`, the prefix without slashes at either end, maybe empty)."""

    kind: Literal["file", "s3"]
    path: Path = Path()
    bucket: str = ""
    prefix: str = ""

    @property
    def url(self) -> str:
        if self.kind == "file":
            return f"file://{self.path}"
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_payload_store(raw: str, name: str = "SESSIONFLOW_PAYLOAD_STORE") -> PayloadStore:
    """`file://<dir>` (absolute, or relative to the working directory) or
    `s3://<bucket>[/<prefix>]`; anything else is an `InvalidInput` saying what is wrong."""
    value = raw.strip()
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("file", "s3"):
        raise ConfigError(f"{name} must be file://<dir> or s3://<bucket>[/<prefix>], got {raw!r}")
    if scheme.lower() == "file":
        if not rest.strip():
            raise ConfigError(f"{name}=file:// names no directory")
        return PayloadStore("file", path=Path(rest))
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"{name}: {bucket!r} is not an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')"
        )
    prefix = prefix.strip("/")
    if "?" in prefix or "#" in prefix or "//" in prefix:
        raise ConfigError(f"{name}: the key prefix {prefix!r} has '?', '#' or an empty segment")
    return PayloadStore("s3", bucket=bucket, prefix=prefix)


def parse_payload_threshold(raw: str | int, name: str = "SESSIONFLOW_PAYLOAD_THRESHOLD") -> int:
    """Bytes from which a payload is stored by reference: 0 (all) to 1 MiB."""
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of bytes, got {raw!r}") from None
    if not 0 <= value <= MAX_PAYLOAD_THRESHOLD:
        raise ConfigError(
            f"{name} must be 0 to {MAX_PAYLOAD_THRESHOLD} bytes (Temporal refuses payloads "
            f"over 2 MiB), got {value}"
        )
    return value


DEFAULT_IDLE_TTL_SECONDS = 7 * 24 * 3600


def parse_idle_ttl(raw: str | None, name: str = "SESSIONFLOW_IDLE_TTL") -> int | None:
    """Seconds (unset: 7 days), or None for `off` or 0: sessions never close on idle."""
    value = (raw or "").strip().lower()
    if not value:
        return DEFAULT_IDLE_TTL_SECONDS
    if value in ("off", "0", "never"):
        return None
    if not value.isascii() or not value.isdigit():
        raise ConfigError(f"{name} must be a number of seconds, or off (never), got {raw!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    # The base task queue: an agent's sessions run on `<task_queue>.<agent>`
    # (`agent_task_queue`).
    task_queue: str = "sessionflow"
    # The Worker Deployment workers join, and their build id within it; None: derived
    # from the installed code (`sessionflow.worker.versions.default_build_id`).
    deployment: str = "sessionflow"
    build_id: str | None = None
    worker_role: WorkerRole = WorkerRole.ALL
    # Running steps learn of interrupts from Redis and heartbeat every 2 s; off, they
    # heartbeat every 0.4 s so that Temporal's cancel alone reaches them fast.
    interrupt_notices: bool = True
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The tenant whose sessions the CLI's session commands mean: `<tenant>:<id>`, as the
    # gateway names a tenant's sessions. None: ids are used as given.
    tenant: str | None = None
    data_dir: Path = Path(".sessionflow")
    sandbox_root: Path | None = None
    stream_max_len: int = 10_000
    stream_ttl_seconds: int = 7 * 24 * 3600
    # Bytes of tool progress (preliminary output) one tool call, and one turn, may
    # write to the stream; past them progress is summarised (sessionflow.streams.budget).
    stream_call_budget: int = 256 * 1024
    stream_turn_budget: int = 1024 * 1024
    context_ttl_seconds: int = 24 * 3600
    # How long a session may go without a message before it closes itself, unless its
    # agent says otherwise (`agent(idle_ttl=...)`); None: never.
    idle_ttl_seconds: int | None = DEFAULT_IDLE_TTL_SECONDS
    metrics_address: str = "127.0.0.1:9464"
    # The default address: when its port is taken (another worker on the host), the
    # next free one is used; a configured address is used as given or not at all.
    metrics_next_free: bool = True
    max_concurrent_activities: int = 200
    max_concurrent_workflow_tasks: int = 100
    max_cached_workflows: int = 1000
    # A registered backend name or a `module:attr` (see sessionflow.sandbox.registry).
    sandbox_backend: str = "local"
    # The local backend: "bubblewrap" or "none" (unconfined, trusted code only), its
    # network ("none" or "egress"), the range of host uids sandboxes run as under a
    # root worker (one each), what each sandbox may use together (its share: memory,
    # processes, CPU, disk) and what each process may use (see
    # sessionflow.sandbox.isolation); "kernel" refuses a host that cannot enforce the
    # share, "best-effort" runs without what it lacks.
    sandbox_isolation: str = "bubblewrap"
    sandbox_network: str = "none"
    sandbox_uid: int = 1_900_000_000
    sandbox_uids: int = 65_536
    sandbox_limits: str = "kernel"
    sandbox_memory_mb: int = 4096
    sandbox_cpu_percent: int = 100
    sandbox_disk_mb: int = 2048
    sandbox_max_processes: int = 512
    sandbox_max_memory_mb: int = 4096
    sandbox_max_cpu_seconds: int = 600
    sandbox_max_file_mb: int = 1024
    sandbox_max_open_files: int = 4096
    sandbox_tmp_mb: int = 256
    # `module:attr` paths of extra model providers (see sessionflow.providers.registry).
    providers: tuple[str, ...] = ()
    e2b_template: str | None = None
    e2b_timeout_seconds: int = 3600
    anthropic_max_tokens: int = 8192
    anthropic_thinking_budget: int = 0
    log_format: str | None = None
    log_level: str = "info"
    # Temporal over TLS: None turns it on when a TLS file, server name or API key is set.
    temporal_tls: bool | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = field(default=None, repr=False)
    # Large payloads go by reference (sessionflow.storage): `file://<dir>` or
    # `s3://<bucket>[/<prefix>]`; None is `<data dir>/payloads`.
    payload_store: str | None = None
    payload_threshold: int = DEFAULT_PAYLOAD_THRESHOLD
    # An `s3://` store's endpoint (any S3-compatible server), region and credentials; what
    # is unset comes from boto's own chain (AWS_PROFILE, config files, instance roles).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)

    @property
    def sandboxes(self) -> Path:
        return self.sandbox_root or self.data_dir / "sandboxes"

    @property
    def payloads(self) -> PayloadStore:
        """The payload store, parsed (`InvalidInput` when `payload_store` is bad)."""
        if self.payload_store is None:
            return PayloadStore("file", path=self.data_dir / PAYLOADS_DIR)
        return parse_payload_store(self.payload_store)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives; a bad value raises `ConfigError`, one
        line naming the variable and what it takes."""
        env = os.environ if env is None else env
        default = cls()

        def text(name: str, fallback: str) -> str:
            return env.get(name) or fallback

        def number(name: str, fallback: int, low: int = 1, high: int | None = None) -> int:
            return env_integer(name, env, fallback, low, high)

        def path(name: str) -> Path | None:
            raw = env.get(name)
            return Path(raw) if raw else None

        sandbox_root = env.get("SESSIONFLOW_SANDBOX_ROOT")
        payload_store = env.get("SESSIONFLOW_PAYLOAD_STORE", "").strip() or None
        if payload_store is not None:
            parse_payload_store(payload_store)  # a bad value fails here, at start
        threshold = env.get("SESSIONFLOW_PAYLOAD_THRESHOLD", "").strip()
        data_dir = Path(text("SESSIONFLOW_DATA_DIR", str(default.data_dir)))
        # Without REDIS_URL, the local stack's Redis on its default port, with the
        # password `sessionflow dev` keeps in the data directory.
        local_password = None if env.get("REDIS_URL") else local_redis_password(data_dir)
        local_redis = (
            LOCAL_REDIS_URL.replace("//", f"//:{quote(local_password, safe='')}@", 1)
            if local_password
            else default.redis_url
        )
        tenant = parse_tenant(env["SESSIONFLOW_TENANT"]) if "SESSIONFLOW_TENANT" in env else None
        if "SESSIONFLOW_TENANT" not in env and local_password:
            tenant = LOCAL_TENANT  # the local stack: what its web page's key sees
        temporal_address = text("TEMPORAL_ADDRESS", default.temporal_address).strip()
        parse_address(temporal_address, "TEMPORAL_ADDRESS")
        task_queue = text("SESSIONFLOW_TASK_QUEUE", default.task_queue).strip()
        if not _TASK_QUEUE.match(task_queue):
            raise ConfigError(
                "SESSIONFLOW_TASK_QUEUE must be 1-200 characters without spaces or "
                f"control characters, got {env.get('SESSIONFLOW_TASK_QUEUE')!r}"
            )
        # Unset: the default address, or the next free port when another worker on
        # the host has it; set: exactly that address ("" turns metrics off).
        metrics_set = "SESSIONFLOW_METRICS_ADDRESS" in env
        metrics_address = env.get("SESSIONFLOW_METRICS_ADDRESS", default.metrics_address).strip()
        if metrics_address:
            parse_address(metrics_address, "SESSIONFLOW_METRICS_ADDRESS", "127.0.0.1:9464")
        log_format = (env.get("SESSIONFLOW_LOG_FORMAT") or "").strip().lower() or None
        if log_format is not None:
            _choice("SESSIONFLOW_LOG_FORMAT", env, "", ("json", "console"))
        max_tokens = number("SESSIONFLOW_ANTHROPIC_MAX_TOKENS", default.anthropic_max_tokens)
        thinking = number(
            "SESSIONFLOW_ANTHROPIC_THINKING_BUDGET", default.anthropic_thinking_budget, low=0
        )
        if thinking and not 1024 <= thinking < max_tokens:
            raise ConfigError(
                "SESSIONFLOW_ANTHROPIC_THINKING_BUDGET must be 0 (off) or from 1024 to one "
                f"less than SESSIONFLOW_ANTHROPIC_MAX_TOKENS ({max_tokens}), got {thinking}"
            )
        uid_base = number("SESSIONFLOW_SANDBOX_UID", default.sandbox_uid, 1, 2**32 - 2)
        uid_count = number("SESSIONFLOW_SANDBOX_UIDS", default.sandbox_uids, 1, 2**31)
        if uid_base + uid_count - 1 > 2**32 - 2:
            raise ConfigError(
                f"SESSIONFLOW_SANDBOX_UID + SESSIONFLOW_SANDBOX_UIDS must stay below 2^32 - 1, "
                f"got {uid_base} + {uid_count}"
            )
        return cls(
            temporal_address=temporal_address,
            temporal_namespace=text("TEMPORAL_NAMESPACE", default.temporal_namespace).strip(),
            temporal_ui_url=_url("TEMPORAL_UI_URL", env, default.temporal_ui_url),
            task_queue=task_queue,
            deployment=parse_deployment_name(
                text("SESSIONFLOW_DEPLOYMENT", default.deployment).strip()
            ),
            build_id=parse_build_id(env.get("SESSIONFLOW_BUILD_ID", "")),
            interrupt_notices=_switch(
                "SESSIONFLOW_INTERRUPT_NOTICES", env.get("SESSIONFLOW_INTERRUPT_NOTICES")
            )
            is not False,
            worker_role=WorkerRole(
                _choice(
                    "SESSIONFLOW_WORKER_ROLE",
                    env,
                    default.worker_role,
                    tuple(role.value for role in WorkerRole),
                )
            ),
            redis_url=check_redis_url(text("REDIS_URL", local_redis)),
            tenant=tenant,
            data_dir=data_dir,
            sandbox_root=Path(sandbox_root) if sandbox_root else None,
            stream_max_len=number("SESSIONFLOW_STREAM_MAXLEN", default.stream_max_len),
            stream_ttl_seconds=number("SESSIONFLOW_STREAM_TTL", default.stream_ttl_seconds),
            stream_call_budget=number(
                "SESSIONFLOW_STREAM_CALL_BUDGET", default.stream_call_budget, low=0
            ),
            stream_turn_budget=number(
                "SESSIONFLOW_STREAM_TURN_BUDGET", default.stream_turn_budget, low=0
            ),
            context_ttl_seconds=number("SESSIONFLOW_CONTEXT_TTL", default.context_ttl_seconds),
            idle_ttl_seconds=parse_idle_ttl(env.get("SESSIONFLOW_IDLE_TTL")),
            metrics_address=metrics_address,
            metrics_next_free=not metrics_set,
            max_concurrent_activities=number(
                "SESSIONFLOW_MAX_CONCURRENT_ACTIVITIES", default.max_concurrent_activities
            ),
            # Temporal's worker refuses fewer than 2 while it caches sessions.
            max_concurrent_workflow_tasks=number(
                "SESSIONFLOW_MAX_CONCURRENT_WORKFLOW_TASKS",
                default.max_concurrent_workflow_tasks,
                low=2,
            ),
            max_cached_workflows=number(
                "SESSIONFLOW_MAX_CACHED_WORKFLOWS", default.max_cached_workflows, low=0
            ),
            sandbox_backend=text("SESSIONFLOW_SANDBOX", default.sandbox_backend).strip(),
            sandbox_isolation=_choice(
                "SESSIONFLOW_SANDBOX_ISOLATION",
                env,
                default.sandbox_isolation,
                ("bubblewrap", "none"),
            ),
            sandbox_network=_choice(
                "SESSIONFLOW_SANDBOX_NETWORK", env, default.sandbox_network, ("none", "egress")
            ),
            sandbox_uid=uid_base,
            sandbox_uids=uid_count,
            sandbox_limits=_choice(
                "SESSIONFLOW_SANDBOX_LIMITS", env, default.sandbox_limits, ("kernel", "best-effort")
            ),
            sandbox_memory_mb=number(
                "SESSIONFLOW_SANDBOX_MEMORY_MB", default.sandbox_memory_mb, low=16
            ),
            sandbox_cpu_percent=number(
                "SESSIONFLOW_SANDBOX_CPU_PERCENT", default.sandbox_cpu_percent
            ),
            sandbox_disk_mb=number("SESSIONFLOW_SANDBOX_DISK_MB", default.sandbox_disk_mb, low=16),
            sandbox_max_processes=number(
                "SESSIONFLOW_SANDBOX_MAX_PROCESSES", default.sandbox_max_processes
            ),
            sandbox_max_memory_mb=number(
                "SESSIONFLOW_SANDBOX_MAX_MEMORY_MB", default.sandbox_max_memory_mb
            ),
            sandbox_max_cpu_seconds=number(
                "SESSIONFLOW_SANDBOX_MAX_CPU_SECONDS", default.sandbox_max_cpu_seconds
            ),
            sandbox_max_file_mb=number(
                "SESSIONFLOW_SANDBOX_MAX_FILE_MB", default.sandbox_max_file_mb
            ),
            sandbox_max_open_files=number(
                "SESSIONFLOW_SANDBOX_MAX_OPEN_FILES", default.sandbox_max_open_files
            ),
            sandbox_tmp_mb=number("SESSIONFLOW_SANDBOX_TMP_MB", default.sandbox_tmp_mb),
            providers=tuple(
                p.strip() for p in env.get("SESSIONFLOW_PROVIDERS", "").split(",") if p.strip()
            ),
            e2b_template=env.get("SESSIONFLOW_E2B_TEMPLATE") or None,
            e2b_timeout_seconds=number("SESSIONFLOW_E2B_TIMEOUT", default.e2b_timeout_seconds),
            anthropic_max_tokens=max_tokens,
            anthropic_thinking_budget=thinking,
            log_format=log_format,
            log_level=_choice("SESSIONFLOW_LOG_LEVEL", env, default.log_level, LOG_LEVELS),
            temporal_tls=_switch("TEMPORAL_TLS", env.get("TEMPORAL_TLS")),
            temporal_tls_ca=path("TEMPORAL_TLS_CA"),
            temporal_tls_cert=path("TEMPORAL_TLS_CERT"),
            temporal_tls_key=path("TEMPORAL_TLS_KEY"),
            temporal_tls_server_name=env.get("TEMPORAL_TLS_SERVER_NAME") or None,
            temporal_api_key=env.get("TEMPORAL_API_KEY") or None,
            payload_store=payload_store,
            payload_threshold=(
                parse_payload_threshold(threshold) if threshold else default.payload_threshold
            ),
            s3_endpoint_url=(
                env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
            ).strip()
            or None,
            s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def workflow_url(self, workflow_id: str) -> str:
        """Where the Temporal UI shows a session."""
        return (
            f"{self.temporal_ui_url}/namespaces/{quote(self.temporal_namespace)}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )


def import_object(path: str) -> object:
    """The object a `module:attr` import path names (`attr` may be dotted: `mod:Cls.make`).

    Raises `ImportError` (the module, or something it imports, is missing) or
    `ValueError` (no `:attr`, no such attribute), each with a one-line reason.
    """
    module_name, _, attr = (part.strip() for part in path.partition(":"))
    if not module_name or module_name.startswith("."):
        raise ValueError("no module before ':'" if not module_name else "a relative module")
    module = importlib.import_module(module_name)
    if not attr:
        raise ValueError(f"no ':attr' after the module {module_name!r}")
    found: object = module
    for name in attr.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return found


def import_factory(
    path: str, settings: Settings, kind: str, is_instance: Callable[[object], bool]
) -> Callable[[], object]:
    """What a `module:attr` setting names, as a call that makes the `kind` of object wanted.

    The attribute may be an instance (`is_instance(attr)`), used as is, or a class or
    other callable, called with no arguments if it needs none, else with `settings` as
    its one positional argument. Raises `ImportError` or `ValueError` with a one-line
    reason when the path names neither; what the call raises is the factory's own.
    """
    found = import_object(path)
    if is_instance(found):
        return lambda: found
    if not callable(found):
        raise ValueError(f"it names a {type(found).__name__}, not a {kind}, class or factory")
    factory = found
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none: try the simplest call
        return factory
    for args in ((), (settings,)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return functools.partial(factory, *args)
    raise ValueError(f"it must take no arguments or just the Settings, not {signature}")
