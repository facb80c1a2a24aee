"""The workflow's word to a running step that its turn was interrupted.

An interrupt reaches a running step as Temporal's cancel of its activity, which the
step hears only in the answer to a heartbeat; steps heartbeat slowly between interrupts
(`sessionflow.streams.interrupts`) and fast once their session's interrupt counter in
Redis moves. The session workflow moves it, with this local activity, whenever it
cancels a running step: so every way of interrupting (the client, `send(...,
interrupt_if_streaming=True)`, the gateway, the CLI, a signal sent from the Temporal UI
or another SDK) goes one way, through the workflow, and lands within the same bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from temporalio import activity

from sessionflow.contract import ActivityName
from sessionflow.streams.interrupts import announce_interrupt


@dataclass
class InterruptNotices:
    redis: Redis | RedisCluster
    prefix: str = "sf"

    @activity.defn(name=ActivityName.ANNOUNCE_INTERRUPT)
    async def announce_interrupt(self, workflow_id: str) -> None:
        """Bump the session's counter; a failure is logged, never raised (the cancel is
        recorded either way and lands on the step's next slow heartbeat)."""
        await announce_interrupt(self.redis, workflow_id, prefix=self.prefix)
