"""Transient context: kept in Redis under an unguessable key, never in Temporal.

`send(context=...)` may carry secrets (auth tokens, API keys). Workflow history,
memos and search attributes are durable and widely readable, so the context goes
to Redis with a TTL and only a random reference travels through signals and
activity parameters (DESIGN.md rule 3). Activities look it up when they need it.

The key carries the session's hash tag (`streams.keys`), so on a Redis Cluster a
session's context lives on the shard of its stream; each call here is one command.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from sessionflow.errors import InvalidInput
from sessionflow.streams.keys import session_prefix

DEFAULT_TTL_SECONDS = 24 * 3600


class ContextStore:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        prefix: str = "sf",
    ):
        self._redis = redis
        self._ttl = ttl_seconds
        self._prefix = prefix

    def _key(self, workflow_id: str, ref: str) -> str:
        return f"{session_prefix(workflow_id, prefix=self._prefix)}:ctx:{ref}"

    async def put(self, workflow_id: str, context: Any) -> str:
        """Store a turn's context; returns the reference to pass instead of it."""
        ref = secrets.token_urlsafe(24)
        await self._redis.set(self._key(workflow_id, ref), json.dumps(context), ex=self._ttl)
        return ref

    async def get(self, workflow_id: str, ref: str) -> Any:
        """The context behind a reference, its lifetime renewed; raises if it expired."""
        raw = await self._redis.getex(self._key(workflow_id, ref), ex=self._ttl)
        if raw is None:
            raise InvalidInput(
                "this turn's context has expired or was never stored "
                f"(it is kept {self._ttl}s after last use); send the message again"
            )
        return json.loads(raw)

    async def delete(self, workflow_id: str, ref: str) -> None:
        """Forget a turn's context once the turn has ended."""
        await self._redis.delete(self._key(workflow_id, ref))
