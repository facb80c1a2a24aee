"""The Python client for backend services, and the only surface the gateway uses:
`SessionClient`, `Session`, `SendResult`, `TurnHandle` (`await result.outcome`),
`TurnDone` (`await result.done`), `SessionRow`, `Schedules`/`ScheduleHandle`/
`ScheduleInfo` (scheduled messages), `StreamEvent`
(one chunk of a session's stream), `parse_send_input` (what `Session.send`
accepts, checked without sending), and `use_client`/`default_client`, the client
`agent.session(id)` uses (importing this package installs it).

A session is opened one way, the reference SDK's: `my_agent.session(id)` (the client
given to `use_client`, else one from the environment), or on a client of your own,
`client.agent(my_agent_or_its_name).session(id)`."""

from sessionflow.client.client import ClientAgent, SessionClient
from sessionflow.client.defaults import default_client, use_client
from sessionflow.client.inputs import parse_send_input
from sessionflow.client.listing import SessionRow
from sessionflow.client.schedules import ScheduleHandle, ScheduleInfo, Schedules
from sessionflow.client.session import SendResult, Session, TurnDone, TurnHandle
from sessionflow.streams.reader import StreamEvent

__all__ = [
    "ClientAgent",
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
    "default_client",
    "parse_send_input",
    "use_client",
]
