"""What the settings' values may be: the parsers and checks `sessionflow.config.Settings`
runs on each, and the constants they share. Every check raises `ConfigError`, one line
that names the variable and says what it takes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

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


def parse_choice(raw: str, name: str, options: tuple[str, ...]) -> str:
    """`raw`, lower-cased, if it is one of `options`."""
    value = raw.strip().lower()
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
    return value


def parse_switch(raw: str, name: str) -> bool | None:
    """on/off (1/0, true/false, yes/no) as a bool; None for an empty value."""
    if not raw.strip():
        return None
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def parse_whole(raw: str | int, name: str, low: int, high: int | None = None) -> int:
    """A whole number from `low` to `high` (no limit when None)."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        value = int(raw.strip()) if isinstance(raw, str) else int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number {span}, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be a whole number {span}, got {raw!r}")
    return value


def env_integer(
    name: str, env: Mapping[str, str], fallback: int, low: int, high: int | None = None
) -> int:
    """The whole number in variable `name` of `env` (`fallback` when unset or empty), from
    `low` to `high`; else a `ConfigError` naming the variable and the range."""
    raw = (env.get(name) or "").strip()
    return parse_whole(raw, name, low, high) if raw else fallback


def parse_positive(raw: str | float, name: str, kind: type[int] | type[float]) -> float:
    """A number above 0, whole when `kind` is int."""
    try:
        value = kind(raw.strip()) if isinstance(raw, str) else kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {raw!r}")
    return value


def parse_http_url(raw: str, name: str) -> str:
    """An http:// or https:// URL, without a trailing '/'."""
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return value.rstrip("/")


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


# A task queue's name, and an agent's after it, must fit Temporal's limit of 1000.
_TASK_QUEUE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")


def parse_task_queue(raw: str, name: str = "SESSIONFLOW_TASK_QUEUE") -> str:
    value = raw.strip()
    if not _TASK_QUEUE.match(value):
        raise ConfigError(
            f"{name} must be 1-200 characters without spaces or control characters, got {raw!r}"
        )
    return value


def agent_task_queue(base: str, agent: str) -> str:
    """The task queue of `agent`'s sessions: `<base>.<agent>`, polled only by workers
    that serve the agent. The client starts each session there, and the workflow's
    activities and continue-as-new stay on the queue its run started on."""
    return f"{base}.{agent}"


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


def parse_api_keys(spec: str, name: str = "SESSIONFLOW_API_KEYS") -> dict[str, str]:
    """`key:tenant,key2:tenant2` -> {key: tenant}; never repeats a key when one is bad."""
    keys: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        key, sep, tenant = entry.rpartition(":")
        if not sep or len(key) < 8 or not TENANT.match(tenant):
            raise ConfigError(
                f"{name} entries must look like '<key of 8+ characters>:<tenant>' "
                "with a tenant of letters, digits, '_' or '-'"
            )
        keys[key] = tenant
    return keys


def check_long_requests(max_connections: int, long_requests: int, reserve: int) -> None:
    """The gateway's long-request limits fit its connections, and leave a reserve below them."""
    if long_requests > max_connections:
        raise ConfigError(
            f"SESSIONFLOW_MAX_LONG_REQUESTS ({long_requests}) must not exceed "
            f"SESSIONFLOW_GATEWAY_MAX_CONNECTIONS ({max_connections})"
        )
    if not 0 <= reserve < long_requests:
        raise ConfigError(
            f"SESSIONFLOW_LONG_REQUEST_RESERVE ({reserve}) must be "
            f"from 0 to one less than SESSIONFLOW_MAX_LONG_REQUESTS ({long_requests})"
        )


# Temporal names a version `<deployment>.<build id>`: the deployment name has no '.'.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_BUILD_ID = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")


def parse_deployment_name(raw: str, name: str = "SESSIONFLOW_DEPLOYMENT") -> str:
    """A Worker Deployment name: 1-100 letters, digits, '_' or '-'."""
    value = str(raw).strip()
    if not _DEPLOYMENT.match(value):
        raise ConfigError(f"{name} must be 1-100 letters, digits, '_' or '-', got {raw!r}")
    return value


def parse_build_id(raw: str | None, name: str = "SESSIONFLOW_BUILD_ID") -> str | None:
    """A build id (letters, digits, '_', '-', '.', '+'; at most 200), or None for ""."""
    value = (raw or "").strip()
    if not value:
        return None
    if not _BUILD_ID.match(value):
        raise ConfigError(
            f"{name} must be 1-200 letters, digits, '_', '-', '.' or '+', got {raw!r}"
        )
    return value
