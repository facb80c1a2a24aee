"""An `s3://` payload store erases a session: its objects live under the session's
namespace (`<prefix>/sessions/<sha256 of the workflow id>/...`), and deleting the
session deletes them, unless a fork holds them (`storage.s3_namespaces`), against moto's
real S3 server on loopback.

The boundary a shared bucket must not let through: a fork's hold racing its parent's
erase. Whichever comes first, a hold that succeeds has every segment it refers to, and
keeps it until the fork is erased; a hold that comes after the erase decided is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.aws.s3driver import S3StorageDriver
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from sessionflow.agents.definition import Agent
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import connect_temporal
from sessionflow.contract import SessionLimits, TurnStatus
from sessionflow.errors import SessionNotFound
from sessionflow.storage import close_external_storage, external_storage_from_settings
from sessionflow.storage.namespaces import session_context, session_namespace
from sessionflow.storage.s3 import LazyS3Client, PrefixedS3StorageDriver
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import counter_agent
from tests.s3_fixtures import S3Server

PREFIX = "store/"
COMMIT_OFTEN = SessionLimits(commit_transcript_after_bytes=1)


def settings_for(server: S3Server, **extra: str) -> Settings:
    return Settings.from_env(
        {
            **server.session_env(),
            "SESSIONFLOW_PAYLOAD_STORE": f"s3://{server.bucket}/{PREFIX}",
            **extra,
        }
    )


def payload(marker: str) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=marker.encode() * 100)


class Watched(LazyS3Client):
    """A client whose calls a test can stop at (`pause_at`), and whose refusals of the
    lock it can wait for (`refused`): the interleavings of a race, made on purpose."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pause_at: Callable[[str, str], bool] = lambda op, key: False
        self.paused = asyncio.Event()
        self.go = asyncio.Event()
        self.refused = asyncio.Event()

    async def _maybe_pause(self, op: str, key: str) -> None:
        if self.pause_at(op, key):
            self.pause_at = lambda op, key: False
            self.paused.set()
            await self.go.wait()

    async def list_keys(self, *, bucket: str, prefix: str) -> list[str]:
        keys = await super().list_keys(bucket=bucket, prefix=prefix)
        await self._maybe_pause("list", prefix)
        return keys

    async def put_small(self, *, bucket: str, key: str, data: bytes) -> None:
        await super().put_small(bucket=bucket, key=key, data=data)
        await self._maybe_pause("put", key)

    async def put_if_absent(self, *, bucket: str, key: str, data: bytes) -> str | None:
        etag = await super().put_if_absent(bucket=bucket, key=key, data=data)
        if etag is None:
            self.refused.set()
        return etag


@pytest.fixture
async def drivers(
    s3_server: S3Server,
) -> AsyncIterator[tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver]]:
    """Two drivers of one store, as two processes sharing the bucket would have."""
    settings = settings_for(s3_server)
    pair = (
        PrefixedS3StorageDriver(Watched(settings), s3_server.bucket, PREFIX),
        PrefixedS3StorageDriver(Watched(settings), s3_server.bucket, PREFIX),
    )
    yield pair
    for driver in pair:
        await driver.aclose()


def watched(driver: PrefixedS3StorageDriver) -> Watched:
    assert isinstance(driver.client, Watched)
    return driver.client


async def stored(driver: PrefixedS3StorageDriver, workflow_id: str, marker: str) -> str:
    """Store a payload for the session; its key."""
    [claim] = await driver.store(session_context(workflow_id), [payload(marker)])
    return claim.claim_data["key"]


def under(workflow_id: str) -> str:
    return f"{PREFIX}sessions/{session_namespace(workflow_id)}/"


async def test_a_sessions_payloads_go_under_its_namespace_and_others_keep_the_sdk_layout(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    driver, other_process = drivers
    [mine] = await driver.store(session_context("chat-1"), [payload("mine")])
    [loose] = await driver.store(StorageDriverStoreContext(), [payload("loose")])
    assert mine.claim_data["key"].startswith(under("chat-1") + "sha256/")
    assert mine.claim_data["session"] == session_namespace("chat-1")
    assert loose.claim_data["key"].startswith(f"{PREFIX}v0/")
    assert "session" not in loose.claim_data
    # Any process of the store reads both, and the SDK's own driver reads them too.
    sdk = S3StorageDriver(client=watched(other_process), bucket=s3_server.bucket)
    for reader in (other_process, sdk):
        read = await reader.retrieve(StorageDriverRetrieveContext(), [mine, loose])
        assert [p.data for p in read] == [payload("mine").data, payload("loose").data]


async def test_a_claim_written_before_namespaces_still_resolves_and_is_left_alone(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    driver, _ = drivers
    # What the store wrote for a session's workflow before namespaces: the SDK's layout.
    old_driver = S3StorageDriver(client=watched(driver), bucket=s3_server.bucket)
    [old] = await old_driver.store(session_context("chat-old", "default"), [payload("old")])
    assert old.claim_data["key"].startswith("v0/ns/default/")
    [read] = await driver.retrieve(StorageDriverRetrieveContext(), [old])
    assert read.data == payload("old").data
    # Erasing the session deletes its namespace; an old object is not in it, and stays.
    await stored(driver, "chat-old", "new")
    assert await driver.erase_session("chat-old") is True
    assert await s3_server.keys(under("chat-old")) == []
    [read] = await driver.retrieve(StorageDriverRetrieveContext(), [old])
    assert read.data == payload("old").data


async def test_erase_deletes_every_object_of_the_namespace_and_nothing_else(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    driver, other_process = drivers
    # More than one page of listing and one batch of DeleteObjects (1000 each).
    client = watched(driver)
    keys = [f"{under('big')}sha256/00/{i:064x}" for i in range(1005)]
    for start in range(0, len(keys), 100):
        await asyncio.gather(
            *(
                client.put_small(bucket=s3_server.bucket, key=key, data=b"x")
                for key in keys[start : start + 100]
            )
        )
    await stored(driver, "big", "one more")
    kept = await stored(driver, "neighbour", "kept")
    [loose] = await driver.store(StorageDriverStoreContext(), [payload("loose")])
    assert len(await s3_server.keys(under("big"))) == 1006

    assert await other_process.erase_session("big") is True
    assert await s3_server.keys(under("big")) == []
    assert set(await s3_server.keys(PREFIX)) == {kept, loose.claim_data["key"]}


async def test_a_held_namespace_is_marked_and_goes_with_its_last_hold(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    driver, other_process = drivers
    segment = await stored(driver, "parent", "segment")
    await stored(driver, "fork", "its own")
    await driver.hold("parent", "fork", keep=[claim_of(s3_server, segment)])
    # A fork of the fork holds the grandparent too.
    await stored(driver, "fork-of-fork", "its own too")
    await driver.hold("fork", "fork-of-fork")

    assert await other_process.erase_session("parent") is False
    assert segment in await s3_server.keys(under("parent"))
    assert f"{under('parent')}erased" in await s3_server.keys(under("parent"))
    assert await other_process.erase_session("fork") is False  # its fork holds it
    assert segment in await s3_server.keys(under("parent"))
    # The last one goes, and releases the others: every namespace goes, and the lock
    # is given back too.
    assert await driver.erase_session("fork-of-fork") is True
    assert await s3_server.keys(PREFIX) == []


async def test_a_new_session_under_a_deleted_id_revives_its_namespace(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    driver, other_process = drivers
    await stored(driver, "reused", "old segment")
    await driver.hold("reused", "fork")
    assert await driver.erase_session("reused") is False
    new = await stored(other_process, "reused", "the new session's")
    assert f"{under('reused')}erased" not in await s3_server.keys(under("reused"))
    # The fork's release leaves the live session's namespace be.
    assert await driver.erase_session("fork") is True
    assert new in await s3_server.keys(under("reused"))


def claim_of(server: S3Server, key: str) -> StorageDriverClaim:
    return StorageDriverClaim(claim_data={"bucket": server.bucket, "key": key})


async def test_a_hold_that_takes_the_lock_first_keeps_the_segments_from_a_racing_erase(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    forking, deleting = drivers
    segment = await stored(forking, "parent", "segment")
    # The hold stops inside the lock, after its first marker; the erase then starts.
    watched(forking).pause_at = lambda op, key: op == "put" and "/holds/" in key
    hold = asyncio.create_task(forking.hold("parent", "fork", keep=[claim_of(s3_server, segment)]))
    await watched(forking).paused.wait()
    erase = asyncio.create_task(deleting.erase_session("parent"))
    await watched(deleting).refused.wait()  # it waits for the lock
    watched(forking).go.set()
    await hold
    assert await erase is False  # it saw the hold: marked erased, nothing deleted
    assert segment in await s3_server.keys(under("parent"))
    assert await deleting.erase_session("fork") is True
    assert await s3_server.keys(PREFIX) == []


async def test_a_hold_that_comes_while_an_erase_decides_is_refused(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    forking, deleting = drivers
    segment = await stored(forking, "parent", "segment")
    # The erase stops inside the lock, having found no holds; the hold then starts.
    watched(deleting).pause_at = lambda op, key: op == "list" and key.endswith("/holds/")
    erase = asyncio.create_task(deleting.erase_session("parent"))
    await watched(deleting).paused.wait()
    hold = asyncio.create_task(forking.hold("parent", "fork", keep=[claim_of(s3_server, segment)]))
    await watched(forking).refused.wait()
    watched(deleting).go.set()
    assert await erase is True
    with pytest.raises(SessionNotFound):
        await hold
    assert await s3_server.keys(under("parent")) == []
    assert await s3_server.keys(under("fork")) == []


async def test_a_hold_after_the_erase_is_done_is_refused(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    forking, deleting = drivers
    segment = await stored(forking, "parent", "segment")
    assert await deleting.erase_session("parent") is True
    with pytest.raises(SessionNotFound):
        await forking.hold("parent", "fork", keep=[claim_of(s3_server, segment)])
    assert await s3_server.keys(PREFIX) == []


async def test_holds_and_erases_racing_freely_never_leave_a_fork_without_its_segments(
    drivers: tuple[PrefixedS3StorageDriver, PrefixedS3StorageDriver], s3_server: S3Server
) -> None:
    forking, deleting = drivers
    outcomes = set()
    for round_ in range(12):
        parent, fork = f"parent-{round_}", f"fork-{round_}"
        segment = await stored(forking, parent, "segment")
        held, erased = await asyncio.gather(
            forking.hold(parent, fork, keep=[claim_of(s3_server, segment)]),
            deleting.erase_session(parent),
            return_exceptions=True,
        )
        if isinstance(held, SessionNotFound):
            assert erased is True
            assert await s3_server.keys(under(parent)) == []
        else:
            assert held is None and erased is False, (held, erased)
            assert segment in await s3_server.keys(under(parent))
        outcomes.add(type(held).__name__)
    print("outcomes:", outcomes)


async def test_a_lock_left_by_a_crashed_holder_is_taken_over(
    s3_server: S3Server,
) -> None:
    settings = settings_for(s3_server)
    driver = PrefixedS3StorageDriver(LazyS3Client(settings), s3_server.bucket, PREFIX)
    try:
        driver.namespaces.lock.ttl = 0.5
        lock_key = driver.namespaces.lock.key
        await driver.client.put_small(bucket=s3_server.bucket, key=lock_key, data=b"crashed")
        await stored(driver, "parent", "segment")
        assert await driver.erase_session("parent") is True
        assert await s3_server.keys(PREFIX) == []
    finally:
        await driver.aclose()


# -- through the public API, with Temporal and a worker --------------------------------

S3Start = Callable[[list[Agent]], Awaitable[SessionClient]]


@pytest.fixture
async def s3_start_worker(
    s3_server: S3Server,
    stack: LocalStack,
    redis: Redis,
    task_queue: str,
    sandbox_root: Path,
) -> AsyncIterator[S3Start]:
    """Like `start_worker`, with the worker and client on an `s3://` store."""
    settings = settings_for(s3_server)
    storage = external_storage_from_settings(settings)
    temporal: Client = await connect_temporal(
        stack.config.temporal_address, external_storage=storage
    )
    running = []

    async def start(agents: list[Agent]) -> SessionClient:
        worker = build_worker(
            temporal,
            redis,
            agents,
            WorkerOptions(task_queue=task_queue, deployment=task_queue, sandbox_root=sandbox_root),
        )
        running.append((worker, asyncio.create_task(worker.run())))
        return SessionClient(temporal, redis, task_queue=task_queue, limits=COMMIT_OFTEN)

    yield start
    for worker, task in running:
        await worker.shutdown()
        await task
    await close_external_storage(storage)


async def test_deleting_a_session_on_the_s3_store_leaves_none_of_its_objects(
    s3_start_worker: S3Start, s3_server: S3Server, unique_id: str
) -> None:
    client = await s3_start_worker([counter_agent])
    session = client.agent(counter_agent).session(unique_id)
    for text in ("one", "two"):
        assert (await (await session.send(text)).outcome).status is TurnStatus.FINISHED
    assert await s3_server.keys(under(session.workflow_id))  # its segments are there
    await session.delete()
    with pytest.raises(SessionNotFound):
        await session.history()
    assert await s3_server.keys(under(session.workflow_id)) == []
    assert await s3_server.keys(f"{PREFIX}sessions/") == []  # nor the lock


async def test_a_fork_outlives_its_deleted_parent_and_frees_it_when_deleted(
    s3_start_worker: S3Start, s3_server: S3Server, unique_id: str
) -> None:
    client = await s3_start_worker([counter_agent])
    parent = client.agent(counter_agent).session(unique_id)
    for text in ("one", "two"):
        await (await parent.send(text)).outcome
    history = await parent.history()
    fork = await parent.fork(f"{unique_id}-fork", at_message_id=history[1].id)

    await parent.delete()
    with pytest.raises(SessionNotFound):
        await parent.history()
    assert f"{under(parent.workflow_id)}erased" in await s3_server.keys(under(parent.workflow_id))
    assert [m.id for m in await fork.history()] == [m.id for m in history[:2]]
    answer = await fork.send("more")
    assert (await answer.outcome).status is TurnStatus.FINISHED
    assert (await fork.history())[-1].text() == "The counter is now 2."

    await fork.delete()
    for session in (parent, fork):
        assert await s3_server.keys(under(session.workflow_id)) == []
    assert await s3_server.keys(f"{PREFIX}sessions/") == []
