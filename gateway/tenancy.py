"""Who is asking, and which session they mean: API keys, tenants, session handles.

Every route needs `Authorization: Bearer <api key>`; the key's tenant scopes every
session id (the session `chat-1` of tenant `acme` is the Sessionflow session
`acme:chat-1`), so one tenant can neither read nor write another's sessions.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sessionflow.client import Session, SessionClient
from sessionflow.errors import AgentNotRegistered, InvalidInput, SessionNotFound
from sessionflow.gateway.config import GatewayConfig
from sessionflow.gateway.problems import Problem
from sessionflow.gateway.slots import Slots as RequestSlots
from sessionflow.ids import tenant_session_id

_bearer = HTTPBearer(auto_error=False, description="An API key from SESSIONFLOW_API_KEYS")


def gateway_client(request: Request) -> SessionClient:
    client: SessionClient = request.app.state.client
    return client


def gateway_config(request: Request) -> GatewayConfig:
    config: GatewayConfig = request.app.state.config
    return config


def request_slots(request: Request) -> RequestSlots:
    slots: RequestSlots = request.app.state.slots
    return slots


Client = Annotated[SessionClient, Depends(gateway_client)]
Config = Annotated[GatewayConfig, Depends(gateway_config)]
# The long-lived requests (streams, long-polls) each tenant holds: `slots.take(owner)`
# before holding a request open, `release()` once it ends (sessionflow.gateway.slots).
Slots = Annotated[RequestSlots, Depends(request_slots)]


async def _tenant(
    config: Config,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant owning the request's API key; 401 without a valid key."""
    if credentials is not None:
        for key, owner in config.api_keys.items():
            if secrets.compare_digest(key.encode(), credentials.credentials.encode()):
                return owner
    raise Problem(401, "unauthorized", "send 'Authorization: Bearer <api key>'")


Tenant = Annotated[str, Depends(_tenant)]
AgentName = Annotated[
    str | None, Query(description="The session's agent; default from the gateway config.")
]


def tenant_session(
    client: SessionClient, config: GatewayConfig, owner: str, session_id: str, agent: str | None
) -> Session:
    """The tenant's session `session_id` (no network call).

    A gateway whose client knows its agents (`SessionClient(agents=...)`, as
    `sessionflow gateway` and `dev` set it up) refuses any other agent with 404
    `agent_not_registered`, before a workflow exists that no worker would run; one
    that knows none passes any agent name on."""
    if not session_id:
        # `{owner}:` alone would pass as an id: an /api/chat body with `"id": ""`
        # started a session that no /v1/sessions/{id} route can address.
        raise InvalidInput("session id is empty")
    name = tenant_session_id(owner, session_id)
    session = client.agent(agent or config.default_agent).session(name)
    if client.agents and session.agent not in client.agents:
        raise AgentNotRegistered(f"this gateway serves no agent {session.agent!r}")
    return session


async def _named_session(
    session_id: str, owner: Tenant, client: Client, config: Config, agent: AgentName = None
) -> Session:
    return tenant_session(client, config, owner, session_id, agent)


async def _existing_session(session: Annotated[Session, Depends(_named_session)]) -> Session:
    if not await session.exists():
        raise SessionNotFound(f"no session {session.id.partition(':')[2]!r}")
    return session


# The session a `/v1/sessions/{session_id}/...` route names: any, or one that exists.
NamedSession = Annotated[Session, Depends(_named_session)]
ExistingSession = Annotated[Session, Depends(_existing_session)]
