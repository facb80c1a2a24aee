"""Forgetting a turn's transient context as soon as the turn ends.

Context may hold a user's credentials; it lives in Redis only while its turn can
still use it (the TTL is the backstop for turns that never end).
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from sessionflow.contract import ActivityName, ForgetContextParams
from sessionflow.streams.context import ContextStore


@dataclass
class ContextActivities:
    contexts: ContextStore

    @activity.defn(name=ActivityName.FORGET_CONTEXT)
    async def forget_context(self, params: ForgetContextParams) -> None:
        await self.contexts.delete(params.workflow_id, params.context_ref)
