"""Chunk writers of one process share a pipeline: what every writer queued in one pass
of the event loop goes to Redis in one round trip, and a writer whose writes fail
leaves the pipeline and retries alone while the others keep streaming."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from sessionflow.chunks import FinishChunk, StartChunk, TextDeltaChunk, TextStartChunk
from sessionflow.streams.keys import StreamKeys
from sessionflow.streams.publisher import StepStream, StreamPublisher
from sessionflow.streams.reader import StreamEvent, StreamReader


async def read_message(redis: Redis, workflow_id: str) -> list[StreamEvent]:
    return [e async for e in StreamReader(redis).read(workflow_id, message_id="m1")]


async def until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.01)


def deltas(events: list[StreamEvent]) -> list[str]:
    return [e.chunk.delta for e in events if isinstance(e.chunk, TextDeltaChunk)]


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of commands of every pipeline sent to Redis."""
    sent: list[int] = []
    execute = Pipeline.execute

    async def counting(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        sent.append(len(self.command_stack))
        return await execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", counting)
    return sent


async def test_writers_that_emit_together_share_one_round_trip(
    redis: Redis, pipelines: list[int]
) -> None:
    publisher = StreamPublisher(redis)
    run = uuid.uuid4().hex[:8]
    sessions = [f"session:demo:together-{run}-{i}" for i in range(20)]
    # A write of its own first, so Redis has the publish script cached.
    await publisher.publish(StepStream(f"{sessions[0]}-warm", "m1", 0), [FinishChunk()])
    writers = [publisher.writer(StepStream(wf, "m1", 0)) for wf in sessions]
    # Twenty sessions each stream a token in the same pass of the event loop.
    for writer in writers:
        writer.emit(StartChunk(message_id="m1"))
        writer.emit(TextStartChunk(id="t"))
        writer.emit(TextDeltaChunk(id="t", delta="0"))
    await until(lambda: all(w.written == 3 for w in writers))
    assert pipelines == [20], "one pipeline, one script call per writer"

    for round_ in range(1, 4):
        for writer in writers:
            writer.emit(TextDeltaChunk(id="t", delta=str(round_)))
        await asyncio.sleep(0)
    for writer in writers:
        writer.emit(FinishChunk())
    await asyncio.gather(*(w.close() for w in writers))
    assert len(pipelines) < 20 * 4, "later rounds were batched too"
    for workflow_id in sessions:
        events = await read_message(redis, workflow_id)
        assert deltas(events) == ["0", "1", "2", "3"]
        assert [e.type for e in events][-1] == "finish"
        assert await redis.hlen(StreamKeys.for_workflow(workflow_id).writes) == 0


async def test_a_writer_whose_writes_fail_retries_alone_while_the_others_stream(
    redis: Redis, pipelines: list[int]
) -> None:
    # Refused writes count as an outage; none of this test's is long enough to drop.
    publisher = StreamPublisher(redis, outage_grace=60)
    run = uuid.uuid4().hex[:8]
    broken, *healthy = [f"session:demo:alone-{run}-{i}" for i in range(4)]
    # A key of the wrong type: every write to this session's stream is refused.
    blocker = StreamKeys.for_workflow(broken).chunks
    await redis.set(blocker, "not a stream")
    stuck = publisher.writer(StepStream(broken, "m1", 0))
    writers = [publisher.writer(StepStream(wf, "m1", 0)) for wf in healthy]
    for writer in [stuck, *writers]:
        writer.emit(StartChunk(message_id="m1"))
        writer.emit(TextStartChunk(id="t"))
    for i in range(5):
        for writer in [stuck, *writers]:
            writer.emit(TextDeltaChunk(id="t", delta=str(i)))
        await asyncio.sleep(0.01)
    for writer in writers:
        writer.emit(FinishChunk())
    await asyncio.wait_for(asyncio.gather(*(w.close() for w in writers)), timeout=10)
    for workflow_id in healthy:
        assert deltas(await read_message(redis, workflow_id)) == ["0", "1", "2", "3", "4"]
    assert pipelines[0] == 4, "the failing writer was in the first pipeline"
    assert stuck.written == 0 and stuck.dropped == 0, "its chunks are held, in order"

    stuck.emit(TextDeltaChunk(id="t", delta="5"))
    stuck.emit(FinishChunk())
    closing = asyncio.create_task(stuck.close())
    await asyncio.sleep(0.3)
    assert not closing.done(), "a refused write is retried, not dropped"
    await redis.delete(blocker)
    await asyncio.wait_for(closing, timeout=10)
    assert stuck.dropped == 0
    assert deltas(await read_message(redis, broken)) == ["0", "1", "2", "3", "4", "5"]
