"""Gateway settings: API keys and their tenants, limits, defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sessionflow.ids import TENANT


def parse_api_keys(spec: str) -> dict[str, str]:
    """`key:tenant,key2:tenant2` -> {key: tenant}; raises ValueError on a bad entry."""
    keys: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        key, sep, tenant = entry.rpartition(":")
        if not sep or len(key) < 8 or not TENANT.match(tenant):
            raise ValueError(
                "SESSIONFLOW_API_KEYS entries must look like '<key of 8+ characters>:<tenant>' "
                "with a tenant of letters, digits, '_' or '-'"
            )
        keys[key] = tenant
    return keys


@dataclass(frozen=True)
class GatewayConfig:
    api_keys: Mapping[str, str] = field(default_factory=dict)
    default_agent: str = "demo"
    # The largest body that posts a message: room for a message's files (10 MiB decoded,
    # base64 in JSON) and its text. Other bodies are at most 256 KiB (limits.py).
    max_body_bytes: int = 16 * 1024 * 1024
    heartbeat_seconds: float = 15.0
    host: str = "127.0.0.1"
    port: int = 8000
    # Where the page links each session in the Temporal UI.
    temporal_ui_url: str = "http://127.0.0.1:8233"
    namespace: str = "default"
    # Connections served at once (uvicorn's `limit_concurrency`); past it, 503.
    max_connections: int = 1000
    # Seconds an idle connection is kept open between requests.
    keep_alive_timeout: float = 5.0
    # Seconds a request's headers may take to arrive, from its first byte (or from
    # the connection's opening); then the connection is dropped.
    header_timeout: float = 10.0
    # Seconds a request's body may take to arrive after its headers; then 408.
    body_timeout: float = 30.0
    # Long-lived requests (SSE streams, outcome long-polls) one tenant may hold open at
    # once, per gateway process; past it, 429 (sessionflow.gateway.slots).
    max_streams_per_tenant: int = 100
    # Long-lived requests of all tenants at once, per process; None: three quarters of
    # `max_connections`, so short requests always find a connection. Past it, 503.
    max_long_requests: int | None = None
    # Of those, how many are kept for tenants that hold none; None: a fifth. One tenant
    # holds at most min(max_streams_per_tenant, long_requests - long_request_reserve).
    reserved_long_requests: int | None = None

    def __post_init__(self) -> None:
        if self.long_requests > self.max_connections:
            raise ValueError(
                f"SESSIONFLOW_MAX_LONG_REQUESTS ({self.long_requests}) must not exceed "
                f"SESSIONFLOW_GATEWAY_MAX_CONNECTIONS ({self.max_connections})"
            )
        if not 0 <= self.long_request_reserve < self.long_requests:
            raise ValueError(
                f"SESSIONFLOW_LONG_REQUEST_RESERVE ({self.long_request_reserve}) must be "
                f"from 0 to one less than SESSIONFLOW_MAX_LONG_REQUESTS ({self.long_requests})"
            )

    @property
    def long_requests(self) -> int:
        """Long-lived requests of all tenants at once (per process)."""
        if self.max_long_requests is not None:
            return self.max_long_requests
        return max(1, self.max_connections * 3 // 4)

    @property
    def long_request_reserve(self) -> int:
        """Free long-request slots only a tenant that holds none may take."""
        if self.reserved_long_requests is not None:
            return self.reserved_long_requests
        return self.long_requests // 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env
        default = cls()

        def positive(name: str, fallback: float | None, kind: type[int] | type[float]) -> Any:
            raw = env.get(name)
            if not raw:
                return fallback
            try:
                value = kind(raw)
            except ValueError:
                value = 0
            if value <= 0:
                raise ValueError(f"{name} must be a positive {kind.__name__}, got {raw!r}")
            return value

        return cls(
            api_keys=parse_api_keys(env.get("SESSIONFLOW_API_KEYS", "")),
            default_agent=env.get("SESSIONFLOW_DEFAULT_AGENT") or default.default_agent,
            max_body_bytes=int(env.get("SESSIONFLOW_MAX_BODY_BYTES") or default.max_body_bytes),
            heartbeat_seconds=float(
                env.get("SESSIONFLOW_SSE_HEARTBEAT") or default.heartbeat_seconds
            ),
            host=env.get("SESSIONFLOW_GATEWAY_HOST") or default.host,
            port=int(env.get("SESSIONFLOW_GATEWAY_PORT") or default.port),
            temporal_ui_url=(env.get("TEMPORAL_UI_URL") or default.temporal_ui_url).rstrip("/"),
            namespace=env.get("TEMPORAL_NAMESPACE") or default.namespace,
            max_connections=positive(
                "SESSIONFLOW_GATEWAY_MAX_CONNECTIONS", default.max_connections, int
            ),
            keep_alive_timeout=positive(
                "SESSIONFLOW_GATEWAY_KEEP_ALIVE_TIMEOUT", default.keep_alive_timeout, float
            ),
            header_timeout=positive(
                "SESSIONFLOW_GATEWAY_HEADER_TIMEOUT", default.header_timeout, float
            ),
            body_timeout=positive("SESSIONFLOW_GATEWAY_BODY_TIMEOUT", default.body_timeout, float),
            max_streams_per_tenant=positive(
                "SESSIONFLOW_MAX_STREAMS_PER_TENANT", default.max_streams_per_tenant, int
            ),
            max_long_requests=positive("SESSIONFLOW_MAX_LONG_REQUESTS", None, int),
            reserved_long_requests=_whole(env, "SESSIONFLOW_LONG_REQUEST_RESERVE"),
        )


def _whole(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of at least 0 from `name`, None when unset or empty."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number of at least 0, got {raw!r}")
    return int(raw)
