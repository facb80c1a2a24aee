"""What a session handle uses of the client that made it.

Handles get this bundle rather than the `SessionClient` itself, so the handle modules
do not import the client module (and the client can import them).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

from temporalio.client import Client

from sessionflow.agents.definition import Agent
from sessionflow.contract import SessionLimits
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
