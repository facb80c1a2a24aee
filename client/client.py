"""SessionClient: the entry point for backend services."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from types import TracebackType

from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow import bridge_exit
from sessionflow.agents.definition import Agent
from sessionflow.client.ended import run_end
from sessionflow.client.listing import SessionRow, list_sessions
from sessionflow.client.schedules import Schedules
from sessionflow.client.services import Services
from sessionflow.client.session import Session
from sessionflow.config import DEFAULT_IDLE_TTL_SECONDS, Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import SessionLimits
from sessionflow.errors import InvalidInput
from sessionflow.ids import validate_agent_name, validate_session_id
from sessionflow.storage import (
    close_external_storage,
    external_storage_from_settings,
    transcript_store,
)
from sessionflow.streams.context import DEFAULT_TTL_SECONDS as DEFAULT_CONTEXT_TTL
from sessionflow.streams.context import ContextStore
from sessionflow.streams.ended_runs import EndedRuns
from sessionflow.streams.reader import StreamReader
from sessionflow.tracing import tracing_from_settings


class SessionClient:
    """Starts and drives sessions through Temporal, and reads their streams from Redis."""

    def __init__(
        self,
        temporal: Client,
        redis: Redis,
        *,
        task_queue: str = "sessionflow",
        default_agent: str | None = None,
        limits: SessionLimits | None = None,
        agents: Iterable[Agent] = (),
        context_ttl_seconds: int = DEFAULT_CONTEXT_TTL,
        search_attributes: bool = True,
        idle_ttl: timedelta | float | None = DEFAULT_IDLE_TTL_SECONDS,
        upgrade_on_new_build: bool = False,
    ) -> None:
        self.temporal = temporal
        self.redis = redis
        # A client made by the caller's own `Client.connect` needs this as much.
        bridge_exit.install()
        self.task_queue = task_queue
        self.default_agent = default_agent
        self.limits = limits or SessionLimits()
        # Agents the client knows; their context schemas validate `send(context=...)`.
        self.agents = {a.name: a for a in agents}
        # A reader left waiting on a run that closed mid-answer is ended, not left to
        # hang (`streams.ended_runs`); one cache of run states for all of its readers.
        self.reader = StreamReader(redis, ended_runs=EndedRuns(partial(run_end, temporal)))
        self.contexts = ContextStore(redis, ttl_seconds=context_ttl_seconds)
        # Committed transcripts are read from the payload store (None without one).
        self.transcripts = transcript_store(temporal)
        # Sessions upsert the Session* search attributes (see workflows.search).
        self.search_attributes = search_attributes
        # How long the sessions it starts may stay without a message before they close
        # (None or 0: never), unless their agent sets `idle_ttl`.
        seconds = idle_ttl.total_seconds() if isinstance(idle_ttl, timedelta) else idle_ttl
        self.idle_ttl = float(seconds) if seconds else None
        # Whether the sessions it starts move to the deployment's current build at
        # continue-as-new, unless their agent sets `upgrade_on_new_build`.
        self.upgrade_on_new_build = upgrade_on_new_build
        # Made by `connect`: `close` closes its payload store's connections too.
        self._owns_temporal = False

    def _services(self) -> Services:
        return Services(
            temporal=self.temporal,
            reader=self.reader,
            contexts=self.contexts,
            task_queue=self.task_queue,
            limits=self.limits,
            search_attributes=self.search_attributes,
            agents=self.agents,
            transcripts=self.transcripts,
            idle_ttl=self.idle_ttl,
            upgrade_on_new_build=self.upgrade_on_new_build,
        )

    @classmethod
    async def connect(
        cls,
        *,
        temporal_address: str | None = None,
        redis_url: str | None = None,
        namespace: str | None = None,
        task_queue: str | None = None,
        default_agent: str | None = None,
        limits: SessionLimits | None = None,
        agents: Iterable[Agent] = (),
        settings: Settings | None = None,
    ) -> SessionClient:
        """Connect; addresses not given come from `TEMPORAL_ADDRESS` and `REDIS_URL`
        (or `settings`, instead of the environment), and so do Temporal's TLS and API key.

        Pass the `agents` you use so `send` can validate context before sending. Large
        payloads go through the payload store `SESSIONFLOW_PAYLOAD_STORE` names, the
        workers' own.
        """
        settings = settings or Settings.from_env()
        # Traced when the OTEL_* variables ask for it: sessions it starts run in the
        # trace of their start (`sessionflow.tracing`).
        tracing = tracing_from_settings(settings)
        temporal = await connect_temporal(
            temporal_address or settings.temporal_address,
            namespace or settings.temporal_namespace,
            settings=settings,
            external_storage=external_storage_from_settings(settings),
            interceptors=[tracing] if tracing is not None else [],
        )
        redis = await connect_redis(redis_url or settings.redis_url)
        client = cls(
            temporal,
            redis,
            task_queue=task_queue or settings.task_queue,
            default_agent=default_agent,
            limits=limits,
            agents=agents,
            context_ttl_seconds=settings.context_ttl_seconds,
            idle_ttl=settings.idle_ttl_seconds,
            upgrade_on_new_build=settings.upgrade_on_new_build,
        )
        client._owns_temporal = True
        return client

    @property
    def schedules(self) -> Schedules:
        """Every session's scheduled messages: `create`, `get`, `list`."""
        return Schedules(self._services())

    def agent(self, agent: str | Agent | None = None) -> ClientAgent:
        """An agent on this client, by name or the `Agent` itself (which also teaches
        the client its context and state schemas); None: the client's default agent.
        `client.agent(x).session(id)` is the reference's `myAgent.session(id)` on a
        client of your own: the one way to open a session besides `my_agent.session(id)`.
        """
        chosen = agent or self.default_agent
        if chosen is None:
            raise InvalidInput("no agent given: pass agent=... or set default_agent on the client")
        try:
            validate_agent_name(chosen if isinstance(chosen, str) else chosen.name)
        except ValueError as err:
            raise InvalidInput(str(err)) from err
        return ClientAgent(self, chosen)

    async def list_sessions(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        prefix: str | None = None,
        limit: int = 50,
    ) -> list[SessionRow]:
        """Running sessions, most recently active first (a Temporal visibility query).

        `prefix` keeps only session ids that start with it (a tenant's `acme:`).
        """
        return await list_sessions(
            self.temporal, status=status, agent=agent, prefix=prefix, limit=limit
        )

    async def close(self) -> None:
        await self.redis.aclose()
        if self._owns_temporal:
            await close_external_storage(self.temporal.data_converter.external_storage)

    async def __aenter__(self) -> SessionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@dataclass(frozen=True)
class ClientAgent:
    """An agent as one client sees it (`SessionClient.agent`): it opens that agent's
    sessions on that client, as `my_agent.session(id)` does on the default one."""

    client: SessionClient
    agent: str | Agent

    @property
    def name(self) -> str:
        return self.agent if isinstance(self.agent, str) else self.agent.name

    def session(self, session_id: str) -> Session:
        """A handle on the agent's session `session_id`; no network call until it is
        used."""
        try:
            validate_session_id(session_id)
        except ValueError as err:
            raise InvalidInput(str(err)) from err
        return Session(self.client._services(), session_id, self.agent)
