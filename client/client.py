"""SessionClient: the entry point for backend services."""

from __future__ import annotations

from types import TracebackType

from redis.asyncio import Redis
from temporalio.client import Client

from client.session import Session
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.errors import InvalidInput
from streams.reader import StreamReader
from workflows.contract import SessionLimits
from workflows.ids import validate_agent_name, validate_session_id


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
    ) -> None:
        self.temporal = temporal
        self.redis = redis
        self.task_queue = task_queue
        self.default_agent = default_agent
        self.limits = limits or SessionLimits()
        self.reader = StreamReader(redis)

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
    ) -> SessionClient:
        """Connect; addresses not given come from `TEMPORAL_ADDRESS` and `REDIS_URL`."""
        settings = Settings.from_env()
        temporal = await connect_temporal(
            temporal_address or settings.temporal_address,
            namespace or settings.temporal_namespace,
        )
        redis = await connect_redis(redis_url or settings.redis_url)
        return cls(
            temporal,
            redis,
            task_queue=task_queue or settings.task_queue,
            default_agent=default_agent,
            limits=limits,
        )

    def session(self, session_id: str, *, agent: str | None = None) -> Session:
        """A handle on a session; no network call until it is used."""
        name = agent or self.default_agent
        if name is None:
            raise InvalidInput("no agent given: pass agent=... or set default_agent on the client")
        try:
            return Session(self, validate_session_id(session_id), validate_agent_name(name))
        except ValueError as err:
            raise InvalidInput(str(err)) from err

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> SessionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
