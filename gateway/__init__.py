"""The HTTP gateway: REST and SSE for browsers and other languages, AI SDK compatible."""

from sessionflow.gateway.app import create_app
from sessionflow.gateway.config import GatewayConfig

__all__ = ["GatewayConfig", "create_app"]
