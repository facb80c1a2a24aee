"""Gateway settings: API keys and their tenants, limits, defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_api_keys(spec: str) -> dict[str, str]:
    """`key:tenant,key2:tenant2` -> {key: tenant}; raises ValueError on a bad entry."""
    keys: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        key, sep, tenant = entry.rpartition(":")
        if not sep or len(key) < 8 or not _TENANT.match(tenant):
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
    max_body_bytes: int = 1024 * 1024
    heartbeat_seconds: float = 15.0
    host: str = "127.0.0.1"
    port: int = 8000
    # Where the page links each session in the Temporal UI.
    temporal_ui_url: str = "http://127.0.0.1:8233"
    namespace: str = "default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env
        default = cls()
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
        )
