"""The Python client for backend services, and the only surface the gateway uses:
`SessionClient`, `Session`, `SendResult`, `TurnHandle`, `SessionRow`, `StreamEvent`
(one chunk of a session's stream) and `parse_send_input` (what `Session.send`
accepts, checked without sending)."""

from sessionflow.client.client import SessionClient
from sessionflow.client.inputs import parse_send_input
from sessionflow.client.listing import SessionRow
from sessionflow.client.session import SendResult, Session, TurnHandle
from sessionflow.streams.reader import StreamEvent

__all__ = [
    "SendResult",
    "Session",
    "SessionClient",
    "SessionRow",
    "StreamEvent",
    "TurnHandle",
    "parse_send_input",
]
