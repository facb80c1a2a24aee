"""Publishing chunks that the workflow decides on itself (errors, aborts, step limits)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from streams.chunks import parse_chunk
from streams.publisher import StepStream, StreamPublisher
from workflows.contract import ActivityName, PublishParams


@dataclass
class PublishActivities:
    publisher: StreamPublisher

    @activity.defn(name=ActivityName.PUBLISH)
    async def publish(self, params: PublishParams) -> None:
        ref = params.ref
        where = StepStream(ref.workflow_id, ref.message_id, ref.step, activity.info().attempt)
        await self.publisher.publish(where, [parse_chunk(c) for c in params.chunks])
