"""Publishing chunks that the workflow decides on itself (errors, aborts, step limits)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from sessionflow.chunks import Chunk, StartChunk, parse_chunk
from sessionflow.contract import ActivityName, InterruptNoticeParams, PublishParams
from sessionflow.streams.interrupts import announce_interrupt
from sessionflow.streams.publisher import StepStream, StreamPublisher


@dataclass
class PublishActivities:
    publisher: StreamPublisher

    @activity.defn(name=ActivityName.PUBLISH)
    async def publish(self, params: PublishParams) -> None:
        """Publish; a message that failed before its first chunk gets its `start` first.

        Readers find a message by its `start`, so every message must have one, even
        one whose model step failed before streaming anything.
        """
        ref = params.ref
        where = StepStream(
            ref.workflow_id, ref.message_id, ref.step, activity.info().attempt, source="workflow"
        )
        chunks: list[Chunk] = [parse_chunk(c) for c in params.chunks]
        if not await self.publisher.has_started(ref.workflow_id, ref.message_id):
            chunks.insert(0, StartChunk(message_id=ref.message_id))
        await self.publisher.publish(where, chunks)

    @activity.defn(name=ActivityName.ANNOUNCE_INTERRUPT)
    async def announce_interrupt(self, params: InterruptNoticeParams) -> None:
        """The interrupt notice a client writes after its `interrupt` signal, written by
        the workflow for a cancel request (`workflows.cancels`)."""
        await announce_interrupt(
            self.publisher.redis, params.workflow_id, prefix=self.publisher.prefix
        )
