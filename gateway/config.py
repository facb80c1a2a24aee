"""The gateway's configuration: API keys and their tenants, limits, defaults; built from
`sessionflow.config.Settings` (`GatewayConfig.from_settings`), whose defaults it shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sessionflow.config import Settings, parse_api_keys
from sessionflow.config import check_long_requests as _check_long_requests

__all__ = ["GatewayConfig", "parse_api_keys"]

_DEFAULT = Settings()


@dataclass(frozen=True)
class GatewayConfig:
    api_keys: Mapping[str, str] = field(default_factory=dict)
    default_agent: str = _DEFAULT.default_agent
    # The largest body that posts a message: room for a message's files (10 MiB decoded,
    # base64 in JSON) and its text. Other bodies are at most 256 KiB (limits.py).
    max_body_bytes: int = _DEFAULT.max_body_bytes
    heartbeat_seconds: float = _DEFAULT.sse_heartbeat
    host: str = _DEFAULT.gateway_host
    port: int = _DEFAULT.gateway_port
    # Where the page links each session in the Temporal UI.
    temporal_ui_url: str = _DEFAULT.temporal_ui_url
    namespace: str = _DEFAULT.temporal_namespace
    # Connections served at once (uvicorn's `limit_concurrency`); past it, 503.
    max_connections: int = _DEFAULT.gateway_max_connections
    # Seconds an idle connection is kept open between requests.
    keep_alive_timeout: float = _DEFAULT.gateway_keep_alive_timeout
    # Seconds a request's headers may take to arrive, from its first byte (or from
    # the connection's opening); then the connection is dropped.
    header_timeout: float = _DEFAULT.gateway_header_timeout
    # Seconds a request's body may take to arrive after its headers; then 408.
    body_timeout: float = _DEFAULT.gateway_body_timeout
    # Long-lived requests (SSE streams, outcome long-polls) one tenant may hold open at
    # once, per gateway process; past it, 429 (sessionflow.gateway.slots).
    max_streams_per_tenant: int = _DEFAULT.max_streams_per_tenant
    # Long-lived requests of all tenants at once, per process; None: three quarters of
    # `max_connections`, so short requests always find a connection. Past it, 503.
    max_long_requests: int | None = None
    # Of those, how many are kept for tenants that hold none; None: a fifth. One tenant
    # holds at most min(max_streams_per_tenant, long_requests - long_request_reserve).
    reserved_long_requests: int | None = None

    def __post_init__(self) -> None:
        _check_long_requests(self.max_connections, self.long_requests, self.long_request_reserve)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """The gateway `settings` configure."""
        return cls(
            api_keys=settings.api_keys,
            default_agent=settings.default_agent,
            max_body_bytes=settings.max_body_bytes,
            heartbeat_seconds=settings.sse_heartbeat,
            host=settings.gateway_host,
            port=settings.gateway_port,
            temporal_ui_url=settings.temporal_ui_url,
            namespace=settings.temporal_namespace,
            max_connections=settings.gateway_max_connections,
            keep_alive_timeout=settings.gateway_keep_alive_timeout,
            header_timeout=settings.gateway_header_timeout,
            body_timeout=settings.gateway_body_timeout,
            max_streams_per_tenant=settings.max_streams_per_tenant,
            max_long_requests=settings.max_long_requests,
            reserved_long_requests=settings.long_request_reserve,
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
