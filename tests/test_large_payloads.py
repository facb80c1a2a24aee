"""Payloads too large for Temporal go to the payload store, by reference (sessionflow.storage).

Temporal refuses payloads over 2 MiB: before the store, a session whose transcript grew
past that (nine sends of 250 KiB) failed its workflow task on every retry, forever.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message as ProtoMessage
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import (
    DataConverter,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import data_converter
from sessionflow.contract import SessionLimits, TranscriptView, TurnStatus
from sessionflow.errors import InvalidInput, SessionNotFound
from sessionflow.messages import Role
from sessionflow.providers.scripted import Script, ScriptStep
from sessionflow.storage import (
    FILE_DRIVER_NAME,
    FileStorageDriver,
    PayloadMissing,
    PrefixedS3StorageDriver,
    external_storage_from_settings,
)
from sessionflow.storage.namespaces import session_context, session_namespace
from sessionflow.worker.main import run_worker
from tests.conftest import StartWorker
from tests.s3_fixtures import S3Server

KIB = 1024
SEND_CHARS = 250 * KIB  # under the client's 256 KiB message limit
REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"

SHORT = [ScriptStep(text="Answer {turn}: I have {message_count} messages.")]
# The ninth answer quotes the ninth message twice: a 500 KiB step result.
ECHO_TWICE = [ScriptStep(text="{last_user_text}{last_user_text}")]
big_sender = agent(
    "bigsender",
    model=Script(
        name="bigsender", delay=0, chunk_size=64 * KIB, turns=[*[SHORT] * 8, ECHO_TWICE, SHORT]
    ),
)
s3_echo = agent(
    "s3echo",
    model=Script(name="s3echo", delay=0, chunk_size=64 * KIB, turns=[ECHO_TWICE, SHORT]),
)


def text_of_size(label: str, chars: int = SEND_CHARS) -> str:
    return (f"{label}: all work and no play makes a long transcript. " * (chars // 40 + 1))[:chars]


# -- reading references out of a workflow's history -------------------------------------


def payloads_in(message: ProtoMessage) -> Iterator[Payload]:
    """Every `Payload` anywhere inside a protobuf message (maps and lists included)."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            children = list(value.values())
        elif field.is_repeated:
            children = list(value)
        else:
            children = [value]
        for child in children:
            yield from payloads_in(child)


@dataclass(frozen=True)
class Reference:
    driver: str
    claim: dict[str, str]
    size: int  # bytes of the payload stored


def references_in(events: list[ProtoMessage]) -> list[Reference]:
    found = []
    for event in events:
        for payload in payloads_in(event):
            if payload.metadata.get("messageType") == REFERENCE_TYPE:
                data = json.loads(payload.data)
                found.append(
                    Reference(
                        data["driverName"],
                        data.get("claimData", {}),
                        sum(p.size_bytes for p in payload.external_payloads),
                    )
                )
    return found


async def history_events(temporal: Client, workflow_id: str) -> list[ProtoMessage]:
    return list((await temporal.get_workflow_handle(workflow_id).fetch_history()).events)


def stored_files(root: Path) -> set[Path]:
    return {p for p in (root / "sha256").rglob("*") if p.is_file()}


# -- a. the session, through the public API ---------------------------------------


async def test_nine_sends_of_250_kib_are_answered_and_the_session_keeps_working(
    start_worker: StartWorker, stack: LocalStack, temporal: Client, unique_id: str
) -> None:
    client = await start_worker([big_sender])
    session = client.agent("bigsender").session(unique_id)
    store = stack.config.data_dir / "payloads"
    texts = [text_of_size(f"send {i}") for i in range(1, 10)]

    history_bytes = []
    for i, text in enumerate(texts, start=1):
        outcome = await (await session.send(text)).outcome
        assert outcome.status is TurnStatus.FINISHED, (i, outcome)
        events = await history_events(temporal, session.workflow_id)
        history_bytes.append(sum(e.ByteSize() for e in events))

    view = await client.temporal.get_workflow_handle(session.workflow_id).query(
        "transcript", result_type=TranscriptView
    )
    # The workflow holds a reference to the committed transcript, not 4.7 MB of messages.
    assert view.transcript is not None and view.message_count == 18
    assert len(view.model_dump_json()) < 16 * KIB
    messages = await session.history()
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT] * 9
    assert [m.text() for m in messages[::2]] == texts
    assert messages[17].text() == texts[8] * 2
    assert messages[1].text().startswith("Answer 1: ")
    assert [m.text() for m in await session.history(offset=16, limit=1)] == [texts[8]]

    tenth = await (await session.send("and a short one")).outcome
    assert tenth.status is TurnStatus.FINISHED
    messages = await session.history(offset=18)
    assert messages[0].text() == "and a short one"
    assert messages[1].text().startswith("Answer 10: ")

    events = await history_events(temporal, session.workflow_id)
    largest = max(e.ByteSize() for e in events)
    assert largest < 300 * KIB, f"an event of {largest} bytes went inline"
    # Activity inputs carry a reference to the transcript and the messages after it,
    # never the whole transcript: each is under the payload threshold, inline.
    inputs = [
        e.activity_task_scheduled_event_attributes.input
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert inputs and max(i.ByteSize() for i in inputs) < 256 * KIB
    references = references_in(events)
    # The ninth step's 500 KiB result went by reference.
    assert references and max(r.size for r in references) > 500 * KIB
    assert {r.driver for r in references} == {FILE_DRIVER_NAME}
    driver = FileStorageDriver(store)
    for reference in references:
        path = driver.path_of(reference.claim["hash_value"], reference.claim.get("session"))
        assert path.is_file(), reference
    # A step adds its references and the 250 KiB send (signals under the threshold stay
    # inline), not the transcript: the ninth turn costs what the second did.
    growth = [b - a for a, b in itertools.pairwise(history_bytes)]
    assert max(growth) < 300 * KIB, f"history bytes after each turn: {history_bytes}"


async def test_a_large_transcript_continues_as_new_by_reference(
    start_worker: StartWorker, temporal: Client, unique_id: str
) -> None:
    client = await start_worker([big_sender], limits=SessionLimits(continue_as_new_after_events=1))
    session = client.agent("bigsender").session(unique_id)
    texts = [text_of_size(f"part {i}") for i in (1, 2)]
    for text in texts:
        assert (await (await session.send(text)).outcome).status is TurnStatus.FINISHED

    events = await history_events(temporal, session.workflow_id)
    started = events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id  # this run continues the one before
    # Over 500 KiB of messages, carried as a reference to the committed transcript.
    assert references_in([started.input]) == []
    assert started.input.ByteSize() < 64 * KIB
    assert [m.text() for m in (await session.history())[::2]] == texts
    assert (await (await session.send("still here")).outcome).status is TurnStatus.FINISHED


# -- b. S3, against a real S3-compatible server on loopback --------------------------------


async def test_the_s3_store_carries_a_session_through_a_real_s3_server(
    s3_server: S3Server, stack: LocalStack, tmp_path: Path, unique_id: str
) -> None:
    env = {
        **s3_server.session_env(),
        "TEMPORAL_ADDRESS": stack.config.temporal_address,
        "REDIS_URL": stack.config.redis_url,
        "SESSIONFLOW_TASK_QUEUE": f"s3-{unique_id}",
        "SESSIONFLOW_DATA_DIR": str(tmp_path / "data"),
        "SESSIONFLOW_SANDBOX_ROOT": str(tmp_path / "sandboxes"),
        "SESSIONFLOW_METRICS_ADDRESS": "",
        "SESSIONFLOW_PAYLOAD_STORE": f"s3://{s3_server.bucket}/sessions/{unique_id}/",
    }
    settings = Settings.from_env(env)
    assert settings.payloads.prefix == f"sessions/{unique_id}"
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, [s3_echo], stop))
    try:
        async with await SessionClient.connect(settings=settings, agents=[s3_echo]) as client:
            storage = client.temporal.data_converter.external_storage
            assert storage is not None
            assert isinstance(storage.drivers[0], PrefixedS3StorageDriver)
            session = client.agent("s3echo").session(unique_id)
            text = text_of_size("to S3")
            first = await (await session.send(text)).outcome
            assert first.status is TurnStatus.FINISHED
            second = await (await session.send("and back")).outcome
            assert second.status is TurnStatus.FINISHED
            messages = await session.history()
            assert [m.text() for m in messages][:3] == [text, text * 2, "and back"]
            assert messages[3].text().startswith("Answer 2: ")
            events = await history_events(client.temporal, session.workflow_id)
            view = await client.temporal.get_workflow_handle(session.workflow_id).query(
                "transcript", result_type=TranscriptView
            )
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)

    assert max(e.ByteSize() for e in events) < 300 * KIB
    references = references_in(events)
    # The first step's 500 KiB result; the transcript went to S3 as segments.
    assert len(references) >= 1, references
    keys = await s3_server.keys(f"sessions/{unique_id}/")
    assert view.transcript is not None and view.transcript.driver == "aws.s3driver"
    assert view.transcript.claim["key"] in keys
    for reference in references:
        assert reference.driver == "aws.s3driver"
        assert reference.claim["bucket"] == s3_server.bucket
        # The session's namespace (erased with it), under the store's prefix.
        namespace = session_namespace(session.workflow_id)
        assert reference.claim["key"].startswith(f"sessions/{unique_id}/sessions/{namespace}/")
        assert reference.claim["session"] == namespace
        assert reference.claim["key"] in keys


# -- c. the file store itself -----------------------------------------------------------


def big_payload(marker: str, size: int = 300 * KIB) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=marker.encode() * (size // 4))


async def test_the_file_store_round_trips_and_stores_a_payload_once(tmp_path: Path) -> None:
    driver = FileStorageDriver(tmp_path / "payloads")
    context = StorageDriverStoreContext()
    one, two = big_payload("one!"), big_payload("two!")

    claims = await driver.store(context, [one, two, one])
    assert claims[0] == claims[2] != claims[1]
    files = stored_files(tmp_path / "payloads")
    assert len(files) == 2  # the same payload twice is one file
    assert {f.name for f in files} == {c.claim_data["hash_value"] for c in claims}
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    # Other processes storing it again, all at once, change nothing.
    others = [FileStorageDriver(tmp_path / "payloads") for _ in range(8)]
    again = await asyncio.gather(*(d.store(context, [one]) for d in others))
    assert all(c == [claims[0]] for c in again)
    assert stored_files(tmp_path / "payloads") == files
    assert not list((tmp_path / "payloads").rglob(".*.tmp"))

    back = await driver.retrieve(StorageDriverRetrieveContext(), claims)
    assert back == [one, two, one]


async def test_the_file_store_refuses_a_hold_once_the_segment_is_deleted(tmp_path: Path) -> None:
    driver = FileStorageDriver(tmp_path / "payloads")
    [segment] = await driver.store(session_context("parent"), [big_payload("segment", 1024)])
    await driver.hold("parent", "fork", keep=[segment])
    assert await driver.erase_session("parent") is False  # held
    assert await driver.erase_session("fork") is True  # and freed with the last hold
    with pytest.raises(SessionNotFound):
        await driver.hold("parent", "late fork", keep=[segment])


async def test_a_missing_or_damaged_payload_says_so(tmp_path: Path) -> None:
    driver = FileStorageDriver(tmp_path / "payloads")
    [claim] = await driver.store(StorageDriverStoreContext(), [big_payload("gone")])
    path = driver.path_of(claim.claim_data["hash_value"])

    path.write_bytes(b"not the payload")
    with pytest.raises(ValueError, match="is corrupt"):
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])

    path.unlink()
    elsewhere = FileStorageDriver(tmp_path / "another")
    with pytest.raises(PayloadMissing) as missing:
        await elsewhere.retrieve(StorageDriverRetrieveContext(), [claim])
    message = str(missing.value)
    assert f"sha256:{claim.claim_data['hash_value']}" in message
    assert str(tmp_path / "another") in message and "SESSIONFLOW_PAYLOAD_STORE" in message
    assert "\n" not in message

    forged = StorageDriverClaim(claim_data={"hash_algorithm": "sha256", "hash_value": "../x"})
    with pytest.raises(ValueError, match="not a reference of the file payload store"):
        await driver.retrieve(StorageDriverRetrieveContext(), [forged])


async def test_the_converter_stores_what_reaches_the_threshold_and_reads_it_back(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, payload_threshold=64 * KIB)
    converter: DataConverter = data_converter(external_storage_from_settings(settings))
    small, large = "s" * (32 * KIB), "l" * (96 * KIB)

    [inline, stored] = await converter.encode([small, large])
    assert inline.metadata["encoding"] == b"json/plain"
    assert stored.metadata["messageType"] == REFERENCE_TYPE and stored.ByteSize() < KIB
    assert len(stored_files(tmp_path / "payloads")) == 1
    assert await converter.decode([inline, stored], [str, str]) == [small, large]


# -- settings ----------------------------------------------------------------------------


def test_payload_store_settings() -> None:
    default = Settings.from_env({"SESSIONFLOW_DATA_DIR": "/srv/sf"})
    assert default.payloads.url == "file:///srv/sf/payloads"
    assert default.payload_threshold == 256 * KIB
    files = Settings.from_env({"SESSIONFLOW_PAYLOAD_STORE": "file:///var/payloads"})
    assert (files.payloads.kind, files.payloads.path) == ("file", Path("/var/payloads"))
    s3 = Settings.from_env(
        {
            "SESSIONFLOW_PAYLOAD_STORE": "s3://my-bucket/a/b/",
            "SESSIONFLOW_PAYLOAD_THRESHOLD": "0",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_SECRET_ACCESS_KEY": "hidden",
        }
    )
    assert (s3.payloads.bucket, s3.payloads.prefix, s3.payload_threshold) == ("my-bucket", "a/b", 0)
    assert s3.s3_endpoint_url == "http://127.0.0.1:9000"
    assert "hidden" not in repr(s3)
    driver = external_storage_from_settings(s3).drivers[0]
    assert isinstance(driver, PrefixedS3StorageDriver) and driver.prefix == "a/b/"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SESSIONFLOW_PAYLOAD_STORE": "/var/payloads"}, "must be file://<dir> or s3://"),
        ({"SESSIONFLOW_PAYLOAD_STORE": "redis://x"}, "must be file://<dir> or s3://"),
        ({"SESSIONFLOW_PAYLOAD_STORE": "file://"}, "names no directory"),
        ({"SESSIONFLOW_PAYLOAD_STORE": "s3://"}, "is not an S3 bucket name"),
        ({"SESSIONFLOW_PAYLOAD_STORE": "s3://My_Bucket/x"}, "is not an S3 bucket name"),
        ({"SESSIONFLOW_PAYLOAD_STORE": "s3://bucket/a//b"}, "empty segment"),
        ({"SESSIONFLOW_PAYLOAD_THRESHOLD": "big"}, "must be a number of bytes"),
        ({"SESSIONFLOW_PAYLOAD_THRESHOLD": "-1"}, "must be 0 to 1048576 bytes"),
        ({"SESSIONFLOW_PAYLOAD_THRESHOLD": "3000000"}, "must be 0 to 1048576 bytes"),
    ],
)
def test_bad_payload_store_settings_are_one_clear_line(env: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as bad:
        Settings.from_env(env)
    assert "\n" not in str(bad.value)


def test_an_s3_endpoint_must_be_a_url_when_the_store_is_s3() -> None:
    env = {"AWS_ENDPOINT_URL": "127.0.0.1:9000"}
    external_storage_from_settings(Settings.from_env(env))  # a file store: not used
    s3 = Settings.from_env({**env, "SESSIONFLOW_PAYLOAD_STORE": "s3://bucket"})
    with pytest.raises(InvalidInput, match="must be an http:// or https:// URL") as bad:
        external_storage_from_settings(s3)
    assert "\n" not in str(bad.value)


def test_a_settings_object_made_in_code_is_checked_too() -> None:
    with pytest.raises(InvalidInput, match="SESSIONFLOW_PAYLOAD_THRESHOLD"):
        external_storage_from_settings(Settings(payload_threshold=4 * 1024 * KIB))
    with pytest.raises(InvalidInput, match="SESSIONFLOW_PAYLOAD_STORE"):
        external_storage_from_settings(Settings(payload_store="ftp://x"))


def test_the_local_stack_keeps_payloads_beside_its_data(stack: LocalStack) -> None:
    pointed = stack.config.point(Settings.from_env(dict(os.environ)))
    assert pointed.payloads.kind == "file"
    assert pointed.payloads.path == (stack.config.data_dir / "payloads").absolute()
