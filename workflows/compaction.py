"""Compacting a session before a model step, once (see `sessionflow.compaction`).

The model-step activity answers `compact` instead of calling the model when the
request would pass the agent's threshold. The turn then runs `compact_first`: it
announces the compaction (`data-compaction`, status start), makes it (clearing old tool
results needs no activity; a summary is the `compact` activity, retryable and
interruptible like a model step), records it in the session (workflow state, carried
across continue-as-new) and in the answer (a `data-compaction` part with the same id,
status end, which replaces the start in a UI), and announces the end. The record comes
from an activity result or the step's own, both in history, so a replay or a worker
lost afterwards never summarises again. Only what is sent changes: history keeps every
message.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from sessionflow.chunks import Chunk, DataChunk
    from sessionflow.compaction import CompactionRecord, by_reference
    from sessionflow.contract import (
        ActivityName,
        CompactParams,
        StepRef,
        StepUsage,
        TranscriptRef,
    )
    from sessionflow.messages import DataPart, Message
    from sessionflow.workflows import policies

PART = "data-compaction"
ResultT = TypeVar("ResultT", bound=BaseModel)


class CompactingHost(Protocol):
    """What a compaction needs of the session (`workflows.turn.TurnHost` has it)."""

    @property
    def compactions(self) -> list[CompactionRecord]: ...

    @property
    def state(self) -> dict[str, Any] | None: ...

    def ref(self, message_id: str, step: int) -> StepRef: ...

    def record_compaction(self, record: CompactionRecord, usage: StepUsage | None) -> None: ...


class CompactingTurn(Protocol):
    """What a compaction needs of the running turn (`workflows.turn.Turn` has it)."""

    reply: Message

    @property
    def host(self) -> CompactingHost: ...

    @property
    def step(self) -> int: ...

    @property
    def context_ref(self) -> str | None: ...

    def see_transcript(self) -> tuple[TranscriptRef | None, list[Message]]: ...

    async def cancellable(
        self,
        name: ActivityName,
        params: BaseModel,
        result_type: type[ResultT],
        preset: policies.ActivityPreset,
        *,
        summary: str,
    ) -> ResultT | None: ...

    async def publish(self, chunks: list[Chunk]) -> None: ...


async def compact_first(turn: CompactingTurn, proposal: CompactionRecord) -> bool:
    """Make the compaction `proposal` before the turn's next model step; False if the
    turn was interrupted meanwhile (nothing is recorded then)."""
    session = turn.host
    # Unique in the session: within a step (which no commit splits) compactions count up.
    made = sum(1 for p in turn.reply.parts if p.type == PART)
    part_id = f"compaction-{turn.reply.id}-{turn.step}-{made}"
    await turn.publish([DataChunk(type=PART, id=part_id, data=proposal.data("start"))])
    record: CompactionRecord | None = proposal
    if proposal.stage == "summary":
        seen = turn.see_transcript()
        record = await turn.cancellable(
            ActivityName.COMPACT,
            CompactParams(
                ref=session.ref(turn.reply.id, turn.step),
                transcript=seen[0],
                messages=seen[1],
                state=session.state,
                context_ref=turn.context_ref,
                current=session.compactions[-1] if session.compactions else None,
                proposal=proposal,
            ),
            CompactionRecord,
            policies.COMPACTION,
            summary=f"compact: summarise {proposal.summarized} messages",
        )
    if record is None:
        return False
    usage = None
    if record.model is not None:
        usage = StepUsage(
            message_id=turn.reply.id, step=turn.step, model=record.model, usage=record.usage
        )
    part = DataPart(type=PART, id=part_id, data=record.data("end"))
    turn.reply.parts.append(part)
    # The summary stays in the answer's part; the session keeps the record without it.
    session.record_compaction(by_reference(record.model_copy(update={"part_id": part_id})), usage)
    await turn.publish([DataChunk(type=PART, id=part_id, data=part.data)])
    return True
