"""What a session handle uses of the client that made it.

Handles get this bundle rather than the `SessionClient` itself, so the handle modules
do not import the client module (and the client can import them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass

from temporalio.client import Client

from sessionflow.agents.definition import Agent
from sessionflow.config import agent_task_queue
from sessionflow.contract import SessionLimits
from sessionflow.storage.transcripts import TranscriptStore
from sessionflow.streams.context import ContextStore
from sessionflow.streams.reader import StreamReader


@dataclass(frozen=True)
class Services:
    temporal: Client
    reader: StreamReader
    contexts: ContextStore
    task_queue: str
    limits: SessionLimits
    # Upsert the Session* search attributes (see sessionflow.workflows.search).
    search_attributes: bool
    # Agents the client knows, by name: their schemas validate context and state.
    agents: MutableMapping[str, Agent]
    # Where committed transcripts are read (the payload store), if the client has one.
    transcripts: TranscriptStore | None = None
    # Seconds without a message before a session closes itself, for agents that set no
    # `idle_ttl` of their own (None: never).
    idle_ttl: float | None = None
    # Sessions move to the current build at continue-as-new, for agents that set no
    # `upgrade_on_new_build` of their own.
    upgrade_on_new_build: bool = False

    def queue_for(self, agent: str) -> str:
        """The task queue `agent`'s sessions start on: `<task_queue>.<agent>`, which
        only workers that serve the agent poll."""
        return agent_task_queue(self.task_queue, agent)


class ServicesRef:
    """The services of a handle: given at once, or made on first use (`make`), so a
    handle can exist before its client has connected (`agent.session(id)`)."""

    def __init__(
        self,
        services: Services | None = None,
        *,
        make: Callable[[], Awaitable[Services]] | None = None,
    ) -> None:
        if services is None and make is None:
            raise ValueError("ServicesRef needs services or a way to make them")
        self._services = services
        self._make = make

    @property
    def known(self) -> Services | None:
        """The services, once there are any (no network call)."""
        return self._services

    async def get(self) -> Services:
        if self._services is None:
            assert self._make is not None
            self._services = await self._make()
        return self._services
