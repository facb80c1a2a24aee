"""The Python client for backend services, and the only surface the gateway uses:
`SessionClient`, `Session`, `SendResult`, `TurnHandle` (`await result.outcome`),
`TurnDone` (`await result.done`), `SessionRow`, `Schedules`/`ScheduleHandle`/
`ScheduleInfo` (scheduled messages), `StreamEvent`
(one chunk of a session's stream), `parse_send_input` (what `Session.send`
accepts, checked without sending), and `agent_session`/`use_client`/`default_client`, the
client `agent.session(id)` uses (importing this package installs it)."""

from sessionflow.client.client import SessionClient
from sessionflow.client.defaults import agent_session, default_client, use_client
from sessionflow.client.inputs import parse_send_input
from sessionflow.client.listing import SessionRow
from sessionflow.client.schedules import ScheduleHandle, ScheduleInfo, Schedules
from sessionflow.client.session import SendResult, Session, TurnDone, TurnHandle
from sessionflow.streams.reader import StreamEvent

__all__ = [
    "ScheduleHandle",
    "ScheduleInfo",
    "Schedules",
    "SendResult",
    "Session",
    "SessionClient",
    "SessionRow",
    "StreamEvent",
    "TurnDone",
    "TurnHandle",
    "agent_session",
    "default_client",
    "parse_send_input",
    "use_client",
]
