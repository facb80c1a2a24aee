"""The stream under stress: a Redis outage mid-step, and retention limits."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.worker import Worker

from sessionflow.chunks import StartChunk, TextDeltaChunk, TextStartChunk
from sessionflow.cli.localstack import free_port, redis_binary
from sessionflow.client.client import SessionClient
from sessionflow.connections import redis_client
from sessionflow.contract import TurnStatus
from sessionflow.streams.assemble import assemble
from sessionflow.streams.keys import StreamKeys
from sessionflow.streams.publisher import Retention, StepStream, StreamPublisher
from sessionflow.streams.reader import StreamEvent, StreamReader
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import LONG_TEXT, SLOW_SCRIPT, slow_agent, streaming_agent
from tests.conftest import StartWorker

pytestmark = pytest.mark.slow


class RedisProcess:
    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self._command = [
            str(redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(data), "--appendonly", "yes", "--save", "",
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL)
        probe = Redis.from_url(self.url)
        for _ in range(100):
            try:
                await probe.ping()
                break
            except OSError:
                await asyncio.sleep(0.05)
            except Exception:
                await asyncio.sleep(0.05)
        await probe.aclose()

    def kill(self) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()


def slow_worker(temporal: Client, redis: Redis, task_queue: str, sandbox_root: Path) -> Worker:
    options = WorkerOptions(task_queue=task_queue, sandbox_root=sandbox_root)
    return build_worker(temporal, redis, [slow_agent], options)


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    await server.start()
    yield server
    if server._process and server._process.poll() is None:
        server.kill()


async def test_a_redis_outage_mid_step_loses_no_step_and_history_has_everything(
    temporal: Client, own_redis: RedisProcess, task_queue: str, sandbox_root: Path, unique_id: str
) -> None:
    redis = Redis.from_url(own_redis.url)
    async with slow_worker(temporal, redis, task_queue, sandbox_root):
        client = SessionClient(temporal, redis, task_queue=task_queue)
        session = client.agent("slow").session(unique_id)
        result = await session.send("go")
        seen = 0
        async for event in result.stream():
            seen += event.type == "text-delta"
            if seen == 5:
                break
        own_redis.kill()  # mid-step: chunks can no longer be published
        outcome = await asyncio.wait_for(result.outcome, timeout=60)
        assert outcome.status is TurnStatus.FINISHED
        history = await session.history()
        expected = "".join(
            s.text.replace("{last_tool_output}", "1 2 3") for s in SLOW_SCRIPT.turns[0]
        )
        assert history[-1].text() == expected
        assert [p.output["stdout"] for p in history[-1].tool_parts()] == ["step-one\n", "1 2 3\n"]

        # Redis comes back with what it had persisted; a reader gets the stream as far
        # as it was written, and history has the rest.
        await own_redis.start()
        await redis.aclose()
        redis = Redis.from_url(own_redis.url)
        keys = StreamKeys.for_workflow(session.workflow_id)
        assert await redis.xlen(keys.chunks) > 0
        await redis.aclose()


async def test_redis_restarted_mid_stream_readers_resume_and_miss_nothing(
    temporal: Client, own_redis: RedisProcess, task_queue: str, sandbox_root: Path, unique_id: str
) -> None:
    redis = Redis.from_url(own_redis.url)
    async with slow_worker(temporal, redis, task_queue, sandbox_root):
        client = SessionClient(temporal, redis, task_queue=task_queue)
        session = client.agent("slow").session(unique_id)
        result = await session.send("go")
        # Two readers: one from the message's start, one that joins later by cursor.
        first: list[StreamEvent] = []
        async for event in result.stream():
            first.append(event)
            if sum(e.type == "text-delta" for e in first) == 5:
                break
        rest = asyncio.create_task(collect(session.stream(after=first[-1].id)))
        late = asyncio.create_task(collect(session.stream(message_id=result.assistant_message_id)))
        await asyncio.sleep(0.2)

        own_redis.kill()  # while the first model step streams
        await asyncio.sleep(1.5)
        assert not rest.done(), "the reader gave up instead of waiting for Redis"
        await own_redis.start()  # same port, same append-only file

        outcome = await asyncio.wait_for(result.outcome, timeout=60)
        events = first + await asyncio.wait_for(rest, timeout=30)
        replay = await asyncio.wait_for(late, timeout=30)
        history = await session.history()
        await redis.aclose()

    assert outcome.status is TurnStatus.FINISHED
    reply = history[-1]
    assert reply.text() == "".join(
        s.text.replace("{last_tool_output}", "1 2 3") for s in SLOW_SCRIPT.turns[0]
    )
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "a chunk was delivered twice"
    assert events[-1].type == "finish"
    # No chunk lost across the restart: both readers rebuild exactly the message.
    assert assemble(events) == reply
    assert assemble(replay) == reply
    assert not [e for e in events if e.type == "data-retry"], "no step needed a retry"


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_streams_are_trimmed_and_expire(
    temporal: Client, redis: Redis, task_queue: str, sandbox_root: Path, unique_id: str
) -> None:
    options = WorkerOptions(
        task_queue=task_queue,
        sandbox_root=sandbox_root,
        retention=Retention(max_len=20, ttl_seconds=90),
    )
    async with build_worker(temporal, redis, [streaming_agent], options):
        client = SessionClient(temporal, redis, task_queue=task_queue)
        session = client.agent("streamer").session(unique_id)
        result = await session.send("long")
        events = [e async for e in result.stream()]
        await result.done
        assert (await session.history())[-1].text() == LONG_TEXT
    keys = StreamKeys.for_workflow(session.workflow_id)
    published = len(events)
    assert published > 250
    length = await redis.xlen(keys.chunks)
    # MAXLEN ~ trims whole internal nodes (100 entries): approximately max_len.
    assert length <= 20 + 100 < published
    for key in (keys.chunks, keys.index):
        assert 0 < await redis.ttl(key) <= 90


async def test_stream_keys_share_one_cluster_slot(start_worker: StartWorker) -> None:
    from redis.crc import key_slot

    keys = StreamKeys.for_workflow("session:demo:user-1")
    assert keys.chunks == "sf:{session:demo:user-1}:chunks"
    assert key_slot(keys.chunks.encode()) == key_slot(keys.index.encode())
    assert key_slot(b"sf:{session:demo:user-1}:ctx:abc") == key_slot(keys.chunks.encode())


async def test_more_live_readers_than_redis_py_pools_by_default(
    start_worker: StartWorker, unique_id: str
) -> None:
    # Each live reader holds a connection in XREAD; redis-py's default pool of 100
    # failed the 101st ("Too many connections").
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    readers = [
        asyncio.create_task(collect(client.reader.read(session.workflow_id))) for _ in range(150)
    ]
    await asyncio.sleep(0.5)  # all blocked in XREAD before anything is written
    result = await session.send("long")
    await result.done
    streams = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
    reply = (await session.history())[-1]
    assert reply.text() == LONG_TEXT
    assert all(assemble(events) == reply for events in streams)


async def test_tail_keeps_following_after_the_reader_gives_up_on_redis(
    own_redis: RedisProcess,
) -> None:
    # The reader waits out short outages itself and then raises StreamUnavailable;
    # `sessionflow tail` must keep going past that and resume after its last event.
    from sessionflow.cli.chat import tail

    redis = redis_client(own_redis.url)
    publisher = StreamPublisher(redis)
    where = StepStream("session:demo:tail", "msg_1", step=0)
    await publisher.publish(where, [StartChunk(message_id="msg_1"), TextStartChunk(id="t")])
    reader = StreamReader(redis, block_ms=100, reconnect_seconds=0.3)
    events = tail(reader, "session:demo:tail", None, retry_seconds=0.1)
    seen = [await anext(events), await anext(events)]
    own_redis.kill()
    later = asyncio.create_task(anext(events))
    await asyncio.sleep(1.0)  # well past the reader's 0.3 s: it has given up at least once
    assert not later.done(), later
    await own_redis.start()
    await publisher.publish(where, [TextDeltaChunk(id="t", delta="after the outage")])
    seen.append(await asyncio.wait_for(later, timeout=10))
    await events.aclose()
    await redis.aclose()
    assert [e.type for e in seen] == ["start", "text-start", "text-delta"]
    assert seen[-1].chunk.delta == "after the outage"  # type: ignore[attr-defined]
