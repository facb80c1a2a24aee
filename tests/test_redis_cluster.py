"""Streams on a real Redis Cluster: three primaries and a replica of one of them
(`tests.redis_cluster`), started once for the module, used through the project's own
`connect_redis`, `StreamPublisher`, `StreamReader` and `ContextStore`.

Each test finds sessions whose keys the cluster itself places on the node it needs,
so the tests hold whichever node is primary when they run (a failover test swaps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from temporalio.client import Client

from sessionflow.chunks import (
    FinishChunk,
    StartChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
)
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import cluster_node_url, connect_redis
from sessionflow.contract import TurnStatus
from sessionflow.errors import ConnectionFailed, InvalidInput
from sessionflow.streams.assemble import assemble
from sessionflow.streams.context import ContextStore
from sessionflow.streams.interrupts import InterruptWatch, announce_interrupt
from sessionflow.streams.keys import StreamKeys, session_prefix
from sessionflow.streams.publisher import ChunkWriter, StepStream, StreamPublisher
from sessionflow.streams.reader import StreamEvent, StreamReader, entry_key
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import context_agent, tool_agent
from tests.redis_cluster import ClusterNode, LocalRedisCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalRedisCluster]:
    running = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        await running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def on_cluster(cluster: LocalRedisCluster) -> AsyncIterator[Redis]:
    """The project's own client for the cluster (a `RedisCluster`, typed `Redis`)."""
    client = await connect_redis(cluster.url)
    yield client
    await client.aclose()


async def sessions_on(
    cluster: LocalRedisCluster, node: ClusterNode, count: int, tag: str
) -> list[str]:
    """`count` workflow ids whose keys the cluster serves from `node`."""
    found: list[str] = []
    for i in range(10_000):
        workflow_id = f"session:demo:{tag}-{i}"
        if (await cluster.owner(StreamKeys.for_workflow(workflow_id).chunks)).port == node.port:
            found.append(workflow_id)
            if len(found) == count:
                return found
    raise AssertionError(f"no session of {tag!r} lands on node {node.port}")


def delta_numbers(events: list[StreamEvent]) -> list[int]:
    return [int(e.chunk.delta) for e in events if isinstance(e.chunk, TextDeltaChunk)]


class Timed:
    """A reader's events with the time each arrived."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.arrived: list[float] = []

    async def follow(self, events: AsyncIterator[StreamEvent]) -> Timed:
        async for event in events:
            self.events.append(event)
            self.arrived.append(time.monotonic())
        return self


class Message:
    """One assistant message written through a `ChunkWriter`: `start`, numbered text
    deltas, `finish`; remembers when each delta was handed to the writer."""

    def __init__(self, writer: ChunkWriter, message_id: str) -> None:
        self.writer = writer
        self.emitted_at: list[float] = []
        writer.emit(StartChunk(message_id=message_id))
        writer.emit(TextStartChunk(id="t"))
        self._chunks = 2

    def delta(self) -> None:
        self.writer.emit(TextDeltaChunk(id="t", delta=str(len(self.emitted_at))))
        self.emitted_at.append(time.monotonic())
        self._chunks += 1

    async def deltas(self, count: int, pace: float = 0.005) -> None:
        for _ in range(count):
            self.delta()
            await asyncio.sleep(pace)

    async def acknowledged(self, timeout: float = 30.0) -> None:
        """Until Redis has acknowledged every chunk emitted so far."""
        deadline = time.monotonic() + timeout
        while self.writer.written < self._chunks:
            assert time.monotonic() < deadline, f"{self.writer.written}/{self._chunks} written"
            await asyncio.sleep(0.01)

    def finish(self) -> None:
        self.writer.emit(TextEndChunk(id="t"))
        self.writer.emit(FinishChunk())

    def longest_wait(self, timed: Timed) -> float:
        """The longest a delta took from the writer to the reader."""
        arrived = {
            int(e.chunk.delta): at
            for e, at in zip(timed.events, timed.arrived, strict=True)
            if isinstance(e.chunk, TextDeltaChunk)
        }
        return max(arrived[i] - emitted for i, emitted in enumerate(self.emitted_at))


def assert_resumes_exactly(
    everything: list[StreamEvent], cursor: str, resumed: list[StreamEvent]
) -> None:
    expected = [e for e in everything if entry_key(e.id) > entry_key(cursor)]
    assert [e.id for e in resumed] == [e.id for e in expected]
    assert [e.chunk for e in resumed] == [e.chunk for e in expected]


# --- configuration -------------------------------------------------------------------


def test_a_cluster_is_named_by_the_redis_cluster_scheme() -> None:
    assert cluster_node_url("redis+cluster://:pw@10.0.0.5:7000") == "redis://:pw@10.0.0.5:7000"
    assert cluster_node_url("rediss+cluster://u:pw@cache.example:6379/0") == (
        "rediss://u:pw@cache.example:6379/0"
    )
    assert cluster_node_url("redis://127.0.0.1:6379/0") is None
    url = "redis+cluster://:pw@10.0.0.5:7000"
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis+clustr://:hunter2secret@10.0.0.5:7000",
        "cluster://:hunter2secret@10.0.0.5:7000",
        "redis+cluster://:hunter2secret@10.0.0.5:7000/3",
    ],
)
def test_a_bad_cluster_url_is_refused_in_one_line_without_its_password(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings.from_env({"REDIS_URL": url})
    message = str(refused.value)
    assert "REDIS_URL" in message and "\n" not in message
    assert "hunter2secret" not in message


def test_a_cluster_url_with_another_database_is_refused_by_the_client_too() -> None:
    with pytest.raises(InvalidInput, match="only database 0"):
        cluster_node_url("redis+cluster://10.0.0.5:7000/2")


async def test_connect_redis_gives_a_cluster_client_for_a_cluster_url(
    cluster: LocalRedisCluster, on_cluster: Redis
) -> None:
    assert isinstance(on_cluster, RedisCluster)
    assert len(on_cluster.get_primaries()) == 3


async def test_a_single_node_url_that_reaches_a_cluster_node_is_refused(
    cluster: LocalRedisCluster,
) -> None:
    plain = f"redis://:{cluster.password}@127.0.0.1:{cluster.nodes[0].port}/0"
    with pytest.raises(InvalidInput, match=r"redis\+cluster://") as refused:
        await connect_redis(plain)
    assert cluster.password not in str(refused.value)


async def test_a_cluster_url_that_reaches_a_single_redis_fails_with_advice(
    stack: LocalStack,
) -> None:
    url = stack.config.redis_url.replace("redis://", "redis+cluster://", 1)
    with pytest.raises(ConnectionFailed, match="Cluster mode is not enabled") as failed:
        await connect_redis(url)
    assert stack.config.redis_password not in str(failed.value)


# --- keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "workflow_id",
    ["session:demo:user-1", "session:support:acme:ticket/42", "session:a:é✓ü", "x"],
)
def test_every_key_of_a_session_hashes_to_one_slot(workflow_id: str) -> None:
    keys = StreamKeys.for_workflow(workflow_id)
    base = session_prefix(workflow_id)
    names = [keys.chunks, keys.index, keys.writes, f"{base}:ctx:abc", f"{base}:exec:call_1:3"]
    slots = {key_slot(name.encode()) for name in names}
    assert slots == {key_slot(workflow_id.encode())}


@pytest.mark.parametrize("workflow_id", ["", "session:demo:{x}", "session:demo:a}b", "{"])
def test_a_workflow_id_that_would_break_the_hash_tag_is_refused(workflow_id: str) -> None:
    with pytest.raises(InvalidInput, match="hash tag"):
        StreamKeys.for_workflow(workflow_id)


async def test_a_sessions_keys_all_live_on_the_node_of_its_slot(
    cluster: LocalRedisCluster, on_cluster: Redis
) -> None:
    workflow_id = "session:demo:keys-together"
    publisher = StreamPublisher(on_cluster)
    reader = StreamReader(on_cluster)
    contexts = ContextStore(on_cluster)
    await publisher.publish(StepStream(workflow_id, "m1", 0), [StartChunk(message_id="m1")])
    await reader.record_sent(workflow_id, "m2")
    ref = await contexts.put(workflow_id, {"api_token": "t"})
    assert await contexts.get(workflow_id, ref) == {"api_token": "t"}

    owner = await cluster.owner(StreamKeys.for_workflow(workflow_id).chunks)
    pattern = f"sf:{{{workflow_id}}}:*"
    found: dict[int, set[str]] = {}
    for node in cluster.nodes:
        found[node.port] = await node.keys(pattern)
    keys = StreamKeys.for_workflow(workflow_id)
    # The publish call's write mark is deleted once written: chunks, index and context.
    assert found.pop(owner.port) == {keys.chunks, keys.index, contexts._key(workflow_id, ref)}
    primaries = {p for p, role in (await cluster.roles()).items() if role == "master"}
    assert all(not keys for port, keys in found.items() if port in primaries)


# --- reading and writing -------------------------------------------------------------


async def test_sessions_on_every_primary_stream_and_resume_from_a_cursor(
    cluster: LocalRedisCluster, on_cluster: Redis
) -> None:
    primaries = [cluster.node(p) for p, r in (await cluster.roles()).items() if r == "master"]
    assert len(primaries) == 3
    sessions = [wf for node in primaries for wf in await sessions_on(cluster, node, 2, "spread")]
    publisher = StreamPublisher(on_cluster)
    reader = StreamReader(on_cluster, block_ms=500)
    # Readers first: each blocks in XREAD on the primary of its session's slot.
    live = [
        asyncio.create_task(Timed().follow(reader.read(wf, message_id="m1"))) for wf in sessions
    ]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in live)

    async def write(workflow_id: str) -> None:
        async with publisher.writer(StepStream(workflow_id, "m1", 0)) as writer:
            message = Message(writer, "m1")
            await message.deltas(60, pace=0.002)
            message.finish()
        assert writer.dropped == 0

    await asyncio.gather(*(write(wf) for wf in sessions))
    for workflow_id, task in zip(sessions, live, strict=True):
        events = (await asyncio.wait_for(task, timeout=30)).events
        assert [e.type for e in events[:2]] == ["start", "text-start"]
        assert delta_numbers(events) == list(range(60))
        assert [e.type for e in events[-2:]] == ["text-end", "finish"]
        # Resume from the middle: exactly what came after the cursor, nothing again.
        cursor = events[30].id
        resumed = (await Timed().follow(reader.read(workflow_id, after=cursor))).events
        assert_resumes_exactly(events, cursor, resumed)
        # Without a cursor: from the message's start, as a reconnecting UI reads it.
        again = (await Timed().follow(reader.read(workflow_id, message_id="m1"))).events
        assert [e.id for e in again] == [e.id for e in events]
        assert await reader.latest_message(workflow_id) == "m1"


async def test_record_sent_and_its_undo_work_on_a_cluster(on_cluster: Redis) -> None:
    reader = StreamReader(on_cluster)
    workflow_id = "session:demo:sent-on-cluster"
    assert await reader.record_sent(workflow_id, "m1") is None
    assert await reader.record_sent(workflow_id, "m2") == "m1"
    await reader.unrecord_sent(workflow_id, "m2", "m1")
    assert await reader.latest_sent(workflow_id) == "m1"


async def test_interrupt_notices_are_watched_across_every_primary(
    cluster: LocalRedisCluster, on_cluster: Redis
) -> None:
    # Sessions whose slots are on different primaries: one pipelined read spans them.
    sessions = [f"session:demo:notice-{i}" for i in range(12)]
    index_keys = [StreamKeys.for_workflow(w).index for w in sessions]
    nodes = {cast(RedisCluster, on_cluster).get_node_from_key(k).name for k in index_keys}
    assert len(nodes) == 3, nodes
    watch = InterruptWatch(on_cluster, poll_seconds=0.02)
    async with contextlib.AsyncExitStack() as stack:
        watched = [await stack.enter_async_context(watch.watching(w)) for w in sessions]
        interrupted = sessions[::3]
        for workflow_id in interrupted:
            await announce_interrupt(on_cluster, workflow_id)
        for w, workflow_id in zip(watched, sessions, strict=True):
            if workflow_id in interrupted:
                await asyncio.wait_for(w.moved.wait(), 5)
        await asyncio.sleep(0.1)
        assert [w.moved.is_set() for w in watched] == [s in interrupted for s in sessions]
        assert all(w.readable for w in watched)


async def test_a_write_whose_reply_was_lost_is_retried_without_repeating_a_chunk(
    on_cluster: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis applies the publish script, then the connection drops before the reply
    # arrives (twice): the writer retries batches Redis already holds, the second time
    # with more chunks queued behind them.
    real_evalsha = on_cluster.evalsha
    lost = 0

    async def applied_then_reply_lost(*args: object) -> object:
        nonlocal lost
        result = await real_evalsha(*args)  # type: ignore[arg-type]
        if lost < 2:
            lost += 1
            raise RedisConnectionError("connection closed before the reply")
        return result

    monkeypatch.setattr(on_cluster, "evalsha", applied_then_reply_lost)
    workflow_id = "session:demo:lost-reply"
    publisher = StreamPublisher(on_cluster)
    async with publisher.writer(StepStream(workflow_id, "m1", 0)) as writer:
        message = Message(writer, "m1")
        for _ in range(40):
            message.delta()
            await asyncio.sleep(0.004)  # more queues during the writer's retry backoff
        message.finish()
    assert lost == 2
    events = (
        await Timed().follow(StreamReader(on_cluster).read(workflow_id, message_id="m1"))
    ).events
    assert delta_numbers(events) == list(range(40))
    assert [e.type for e in events].count("start") == 1
    assert [e.type for e in events].count("finish") == 1
    # The writer's mark is gone once it closed.
    assert await on_cluster.hlen(StreamKeys.for_workflow(workflow_id).writes) == 0


async def test_a_pipeline_whose_replies_were_lost_is_retried_without_repeating_a_chunk(
    cluster: LocalRedisCluster, on_cluster: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writers on every primary share one cluster pipeline; it is applied, then its
    # replies are lost (twice): each writer retries its own batch, alone.
    primaries = [cluster.node(p) for p, r in (await cluster.roles()).items() if r == "master"]
    sessions = [wf for node in primaries for wf in await sessions_on(cluster, node, 2, "lost-pipe")]
    real_execute = ClusterPipeline.execute
    sizes: list[int] = []

    async def applied_then_replies_lost(self: ClusterPipeline, *args: Any, **kw: Any) -> Any:
        sizes.append(len(self))
        result = await real_execute(self, *args, **kw)
        if len(sizes) <= 2:
            raise RedisConnectionError("connection closed before the replies")
        return result

    monkeypatch.setattr(ClusterPipeline, "execute", applied_then_replies_lost)
    publisher = StreamPublisher(on_cluster)
    writers = [publisher.writer(StepStream(wf, "m1", 0)) for wf in sessions]
    messages = [Message(w, "m1") for w in writers]
    for _ in range(20):
        for message in messages:
            message.delta()
        await asyncio.sleep(0.004)
    for message in messages:
        message.finish()
    await asyncio.gather(*(w.close() for w in writers))
    assert sizes[0] == len(sessions), "every writer's first batch was in the lost pipeline"
    assert any(n > 1 for n in sizes[2:]), "writers rejoin the pipeline after retrying alone"
    for workflow_id, writer in zip(sessions, writers, strict=True):
        events = (
            await Timed().follow(StreamReader(on_cluster).read(workflow_id, message_id="m1"))
        ).events
        assert delta_numbers(events) == list(range(20))
        assert [e.type for e in events].count("start") == 1
        assert writer.dropped == 0
        assert await on_cluster.hlen(StreamKeys.for_workflow(workflow_id).writes) == 0


async def test_turns_with_tools_and_context_run_on_the_cluster(
    cluster: LocalRedisCluster,
    on_cluster: Redis,
    temporal: Client,
    task_queue: str,
    sandbox_root: Path,
    unique_id: str,
) -> None:
    # The worker and the client share the cluster client: chunks, the index, the
    # context and the recorded sandbox results all go through it.
    options = WorkerOptions(task_queue=task_queue, sandbox_root=sandbox_root)
    async with build_worker(temporal, on_cluster, [tool_agent, context_agent], options):
        client = SessionClient(temporal, on_cluster, task_queue=task_queue)
        client.agents[context_agent.name] = context_agent
        sessions = []
        for agent_name, text, context in [
            (tool_agent.name, "look around", None),
            (context_agent.name, "who am I?", {"user": "ada", "api_token": "t-1"}),
        ]:
            session = client.agent(agent_name).session(f"{unique_id}-{agent_name}")
            result = await session.send(text, context=context)
            events = [event async for event in result.stream()]
            assert (await result.outcome).status is TurnStatus.FINISHED
            assert assemble(events) == (await session.history())[-1]
            sessions.append(session.workflow_id)
        assert (
            (
                await client.agent(tool_agent.name)
                .session(f"{unique_id}-{tool_agent.name}")
                .history()
            )[-1]
            .text()
            .endswith("The file says: hello.")
        )

    # Whatever the turns left in Redis sits with the session's stream, on one primary.
    primaries = [cluster.node(p) for p, r in (await cluster.roles()).items() if r == "master"]
    held: dict[str, set[str]] = {}
    for workflow_id in sessions:
        owner = await cluster.owner(StreamKeys.for_workflow(workflow_id).chunks)
        for node in primaries:
            keys = await node.keys(f"sf:{{{workflow_id}}}:*")
            if node is owner:
                held[workflow_id] = keys
            else:
                assert keys == set(), (node.port, keys)
    tools, contextual = sessions
    stream = StreamKeys.for_workflow(tools)
    assert {stream.chunks, stream.index} <= held[tools]
    assert any(":exec:" in key for key in held[tools])  # the Bash results, recorded
    assert StreamKeys.for_workflow(contextual).chunks in held[contextual]


# --- failover ------------------------------------------------------------------------


async def test_a_planned_failover_mid_stream_loses_and_repeats_nothing(
    cluster: LocalRedisCluster, on_cluster: Redis
) -> None:
    primary, replica = await cluster.primary_with_replica()
    [workflow_id] = await sessions_on(cluster, primary, 1, "planned")
    publisher = StreamPublisher(on_cluster)
    reader = StreamReader(on_cluster, block_ms=500)
    live = asyncio.create_task(Timed().follow(reader.read(workflow_id, message_id="m1")))
    await asyncio.sleep(0.3)  # blocked in XREAD on the primary about to step down
    async with publisher.writer(StepStream(workflow_id, "m1", 0)) as writer:
        message = Message(writer, "m1")
        await message.deltas(50)
        await message.acknowledged()
        cursor = await reader.last_entry_id(workflow_id)
        assert cursor is not None
        # The replica catches up, takes the slots, and the primary becomes its replica,
        # while the model goes on streaming and the reader is blocked on the primary.
        switched = asyncio.Event()

        async def stream_through_the_failover() -> None:
            while not switched.is_set():
                message.delta()
                await asyncio.sleep(0.003)

        streaming = asyncio.create_task(stream_through_the_failover())
        await asyncio.sleep(0.1)
        await replica.command("CLUSTER", "FAILOVER")
        started = time.monotonic()
        while (await cluster.roles()).get(replica.port) != "master":
            assert time.monotonic() - started < 30, "the manual failover did not happen"
            await asyncio.sleep(0.005)
        took = time.monotonic() - started
        switched.set()
        await streaming
        await message.deltas(50)
        await message.acknowledged()
        message.finish()
    assert writer.dropped == 0
    assert (await cluster.owner(StreamKeys.for_workflow(workflow_id).chunks)).port == replica.port

    timed = await asyncio.wait_for(live, timeout=30)
    total = len(message.emitted_at)
    assert delta_numbers(timed.events) == list(range(total))
    resumed = (await Timed().follow(reader.read(workflow_id, after=cursor))).events
    assert_resumes_exactly(timed.events, cursor, resumed)
    print(
        f"\nplanned failover: roles switched {took:.2f} s after CLUSTER FAILOVER; "
        f"longest delta wait {message.longest_wait(timed):.2f} s; {total} deltas"
    )
    await cluster.wait_healthy()


async def test_a_crashed_primary_is_replaced_by_its_replica_with_no_chunk_lost_or_repeated(
    cluster: LocalRedisCluster, on_cluster: Redis
) -> None:
    primary, replica = await cluster.primary_with_replica()
    [workflow_id] = await sessions_on(cluster, primary, 1, "crash")
    publisher = StreamPublisher(on_cluster)
    reader = StreamReader(on_cluster, block_ms=500)
    live = asyncio.create_task(Timed().follow(reader.read(workflow_id, message_id="m1")))
    await asyncio.sleep(0.3)
    async with publisher.writer(StepStream(workflow_id, "m1", 0)) as writer:
        message = Message(writer, "m1")
        await message.deltas(100)
        # Replication is asynchronous: a write acknowledged in the instant before a crash
        # may never reach the replica. Crash once the replica holds all that was
        # acknowledged, between two chunks of the message, as the model streams.
        await message.acknowledged()
        while not await cluster.in_sync(primary, replica):
            await asyncio.sleep(0.01)
        cursor = await reader.last_entry_id(workflow_id)
        assert cursor is not None
        assert (await cluster.roles())[primary.port] == "master", "an unplanned failover"
        primary.kill()
        crashed = time.monotonic()
        while (await cluster.roles()).get(replica.port) != "master":
            assert time.monotonic() - crashed < 30, "the replica did not take over"
            await message.deltas(5, pace=0.01)  # held by the writer meanwhile
        promoted = time.monotonic() - crashed
        await message.deltas(100)
        await message.acknowledged()
        recovered = time.monotonic() - crashed
        message.finish()
    assert writer.dropped == 0

    timed = await asyncio.wait_for(live, timeout=30)
    total = len(message.emitted_at)
    assert delta_numbers(timed.events) == list(range(total))
    resumed = (await Timed().follow(reader.read(workflow_id, after=cursor))).events
    assert_resumes_exactly(timed.events, cursor, resumed)
    print(
        f"\nprimary crash: replica promoted {promoted:.2f} s after the kill; every chunk "
        f"written {recovered:.2f} s after it; longest delta wait "
        f"{message.longest_wait(timed):.2f} s; {total} deltas"
    )

    # The crashed node comes back as the replica of the node that replaced it.
    primary.start()
    await cluster.wait_healthy()
    started = time.monotonic()
    while (await cluster.roles()).get(primary.port) != "slave":
        assert time.monotonic() - started < 30, "the restarted node did not rejoin"
        await asyncio.sleep(0.05)
    await cluster.wait_healthy()
