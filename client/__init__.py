"""The Python client for backend services: `SessionClient`, `Session`, `SendResult`."""

from client.client import SessionClient
from client.session import SendResult, Session, TurnHandle

__all__ = ["SendResult", "Session", "SessionClient", "TurnHandle"]
