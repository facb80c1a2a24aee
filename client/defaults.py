"""The client `agent.session(id)` uses: one given once (`use_client`), else one
connected from the environment on first use. Importing this module (the client
package does) teaches `Agent.session` to make `Session` handles through it."""

from __future__ import annotations

import asyncio

from sessionflow.agents.definition import Agent, install_session_opener
from sessionflow.client.client import SessionClient
from sessionflow.client.services import Services, ServicesRef
from sessionflow.client.session import Session
from sessionflow.errors import InvalidInput
from sessionflow.ids import validate_session_id

_given: SessionClient | None = None
# Connected from the environment, per event loop (a Redis connection belongs to one).
_from_env: dict[asyncio.AbstractEventLoop, asyncio.Task[SessionClient]] = {}


def use_client(client: SessionClient | None) -> None:
    """Make `client` the one `agent.session(id)` uses (None:
    back to connecting from the environment). Handles made earlier that have not been
    used yet take it too. Either way, clients connected from the environment so far are
    forgotten (not closed)."""
    global _given
    _given = client
    _from_env.clear()


async def default_client() -> SessionClient:
    """The client given to `use_client`, else one connected from the environment
    (`SessionClient.connect()`), made once per event loop."""
    if _given is not None:
        return _given
    loop = asyncio.get_running_loop()
    for old in [other for other in _from_env if other.is_closed()]:
        del _from_env[old]
    task = _from_env.get(loop)
    if task is None or (task.done() and task.exception() is not None):
        task = _from_env[loop] = loop.create_task(SessionClient.connect())
    return await asyncio.shield(task)


def _open_session(agent: Agent, session_id: str) -> Session:
    """What `agent.session(session_id)` returns: a handle on `agent`'s session; no
    network call until it is used (it then uses `default_client()`)."""
    try:
        validate_session_id(session_id)
    except ValueError as err:
        raise InvalidInput(str(err)) from err

    async def services() -> Services:
        client = await default_client()
        client.agents.setdefault(agent.name, agent)
        return client._services()

    return Session(ServicesRef(make=services), session_id, agent)


install_session_opener(_open_session)
