"""The Python client for backend services: `SessionClient`, `Session`, `SendResult`."""

from sessionflow.client.client import SessionClient
from sessionflow.client.session import SendResult, Session, TurnHandle

__all__ = ["SendResult", "Session", "SessionClient", "TurnHandle"]
