"""Transcripts by reference: committed to the payload store, read back a page at a time.

The workflow keeps a reference to its transcript's newest segment and the messages not
yet committed (sessionflow.storage.transcripts); activities and `history()` read the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.connections import connect_temporal
from sessionflow.contract import SessionLimits, TranscriptView, TurnStatus
from sessionflow.errors import InvalidInput, MessageNotFound
from sessionflow.fragments import join_fragments
from sessionflow.messages import Message, MessageStatus, Role, TextPart, ToolPart
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.storage import FileStorageDriver, TranscriptStore
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.conftest import StartWorker
from tests.history import workflow_events


class CountingDriver(StorageDriver):
    """A file store that counts what it is asked to read."""

    def __init__(self, root: Path) -> None:
        self.inner = FileStorageDriver(root)
        self.reads = 0

    def name(self) -> str:
        return self.inner.name()

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return await self.inner.store(context, payloads)

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        self.reads += len(claims)
        return await self.inner.retrieve(context, claims)


def text(message_id: str, body: str, role: Role = Role.USER) -> Message:
    return Message(id=message_id, role=role, parts=[TextPart(text=body)])


# -- the store ------------------------------------------------------------------------------


async def test_fragments_split_over_segments_join_into_whole_messages(tmp_path: Path) -> None:
    store = TranscriptStore([FileStorageDriver(tmp_path)])
    head = await store.append(None, [text("u1", "hi"), text("a1", "one", Role.ASSISTANT)])
    # The answer goes on in the next segment (a long turn committed step by step) ...
    head = await store.append(head, [text("a1", " two", Role.ASSISTANT)])
    assert (head.messages, head.last_id) == (2, "a1")
    done = text("a1", " three", Role.ASSISTANT).model_copy(
        update={"status": MessageStatus.INTERRUPTED}
    )
    head = await store.append(head, [done, text("u2", "again")])
    assert (head.messages, head.last_id) == (3, "u2")

    messages = await store.messages(head, [text("a2", "tail", Role.ASSISTANT)])
    assert [m.id for m in messages] == ["u1", "a1", "u2", "a2"]
    assert messages[1].text() == "one two three"
    assert messages[1].status is MessageStatus.INTERRUPTED  # the last fragment says
    # Pages: every offset and limit agrees with slicing the whole.
    for offset in range(5):
        for limit in (None, 1, 2, 3):
            tail = [text("a2", "tail", Role.ASSISTANT)]
            page = await store.messages(head, tail, offset=offset, limit=limit)
            end = None if limit is None else offset + limit
            assert [m.model_dump() for m in page] == [
                m.model_dump() for m in messages[offset:end]
            ], (offset, limit)


async def test_the_newest_page_reads_only_the_newest_segments(tmp_path: Path) -> None:
    writer = TranscriptStore([FileStorageDriver(tmp_path)])
    head = None
    for i in range(50):
        head = await writer.append(head, [text(f"u{i}", f"message {i}")])
    assert head is not None and head.messages == 50

    driver = CountingDriver(tmp_path)
    reader = TranscriptStore([driver])  # a fresh process: nothing cached
    page = await reader.messages(head, offset=48)
    assert [m.text() for m in page] == ["message 48", "message 49"]
    assert driver.reads == 2
    everything = await reader.messages(head)
    assert len(everything) == 50 and driver.reads == 50
    # Segments never change, so a second read comes from memory.
    assert len(await reader.messages(head)) == 50 and driver.reads == 50


async def test_segments_are_content_addressed_and_compressed(tmp_path: Path) -> None:
    store = TranscriptStore([FileStorageDriver(tmp_path)])
    body = "the same long line of tool output\n" * 30_000  # about 1 MB
    first = await store.append(None, [text("u1", body)])
    again = await store.append(None, [text("u1", body)])  # a retried commit
    assert first == again
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].stat().st_size < len(body) // 20


async def test_rewinding_keeps_older_segments_and_cuts_a_split_message(tmp_path: Path) -> None:
    store = TranscriptStore([FileStorageDriver(tmp_path)])
    head = await store.append(None, [text("u1", "a"), text("a1", "b", Role.ASSISTANT)])
    head = await store.append(head, [text("a1", "c", Role.ASSISTANT), text("u2", "d")])
    head = await store.append(head, [text("a2", "e", Role.ASSISTANT)])

    to_a1 = await store.rewind(head, "a1")
    assert [m.text() for m in await store.messages(to_a1)] == ["a", "bc"]
    assert (to_a1.messages, to_a1.last_id) == (2, "a1")
    to_u1 = await store.rewind(head, "u1")
    assert [m.text() for m in await store.messages(to_u1)] == ["a"]
    # The original is untouched: rewinding writes a new head.
    assert [m.text() for m in await store.messages(head)] == ["a", "bc", "d", "e"]
    with pytest.raises(MessageNotFound):
        await store.rewind(head, "nope")


async def test_a_reference_to_another_store_says_what_is_wrong(tmp_path: Path) -> None:
    head = await TranscriptStore([FileStorageDriver(tmp_path)]).append(None, [text("u", "x")])
    other = TranscriptStore([FileStorageDriver(tmp_path, driver_name="elsewhere")])
    with pytest.raises(InvalidInput, match="SESSIONFLOW_PAYLOAD_STORE"):
        await other.messages(head)


def test_joining_never_changes_the_fragments() -> None:
    first = text("a", "one", Role.ASSISTANT)
    second = text("a", "two", Role.ASSISTANT)
    [joined] = join_fragments([first, second])
    assert joined.text() == "onetwo"
    assert first.text() == "one" and second.text() == "two"


# -- sessions -------------------------------------------------------------------------------


class Chunk(BaseModel):
    n: int


async def _emit(args: Chunk, ctx: ToolContext) -> str:
    # What the tool saw of the transcript, then a large output.
    return f"saw {len(ctx.messages)} messages; " + f"line {args.n}\n" * 2000


emit_tool = tool("emit", "Print a lot", input_schema=Chunk, execute=_emit)

LONG_TURN = Script(
    name="longturn",
    delay=0,
    chunk_size=4096,
    turns=[
        [
            *[
                ScriptStep(
                    text=f"Step {i}.", tool_calls=[ScriptedToolCall(tool="emit", input={"n": i})]
                )
                for i in range(4)
            ],
            ScriptStep(text="Done after {message_count} messages: {last_tool_output}"),
        ],
        [ScriptStep(text="Turn {turn}.")],
    ],
)
long_turn_agent = agent("longturn", model=LONG_TURN, tools=[emit_tool])


async def transcript_of(temporal: Client, workflow_id: str) -> TranscriptView:
    handle = temporal.get_workflow_handle(workflow_id)
    view: TranscriptView = await handle.query("transcript", result_type=TranscriptView)
    return view


async def test_a_long_turn_is_committed_step_by_step_and_reads_back_whole(
    start_worker: StartWorker, temporal: Client, unique_id: str
) -> None:
    # Every checkpoint commits: each step's input carries only its own turn's start.
    client = await start_worker(
        [long_turn_agent], limits=SessionLimits(commit_transcript_after_bytes=0)
    )
    session = client.agent("longturn").session(unique_id)
    outcome = await (await session.send("go")).outcome
    assert outcome.status is TurnStatus.FINISHED

    view = await transcript_of(temporal, session.workflow_id)
    assert view.transcript is not None
    assert view.tail == [] and view.message_count == 2
    [user, answer] = await session.history()
    assert user.text() == "go"
    assert answer.status is MessageStatus.COMPLETE
    tools = [p for p in answer.parts if isinstance(p, ToolPart)]
    assert [p.input for p in tools] == [{"n": i} for i in range(4)]
    # The tools and the model saw the whole transcript, committed parts included.
    assert all(str(p.output).startswith("saw 2 messages; line ") for p in tools)
    assert answer.text().startswith('Step 0.Step 1.Step 2.Step 3.Done after 2 messages: "saw 2')

    # Each model step's input is a reference and one step's parts, not the turn so far.
    events = await workflow_events(temporal, session.workflow_id)
    inputs = [
        e.activity_task_scheduled_event_attributes.input.ByteSize()
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name
        == "sessionflow.model_step"
    ]
    assert len(inputs) == 5 and max(inputs) < 4 * 1024, inputs

    second = await (await session.send("more")).outcome
    assert second.status is TurnStatus.FINISHED
    assert [m.text() for m in await session.history(offset=2)] == ["more", "Turn 2."]
    assert (await session.info()).message_count == 4


async def test_rewinding_into_the_committed_transcript(
    start_worker: StartWorker, temporal: Client, unique_id: str
) -> None:
    client = await start_worker(
        [long_turn_agent], limits=SessionLimits(commit_transcript_after_bytes=0)
    )
    session = client.agent("longturn").session(unique_id)
    for words in ("go", "second", "third"):
        assert (await (await session.send(words)).outcome).status is TurnStatus.FINISHED
    messages = await session.history()
    assert len(messages) == 6
    view = await transcript_of(temporal, session.workflow_id)
    assert view.transcript is not None and view.tail == []

    await session.update(last_message_id=messages[1].id)  # committed long ago
    assert [m.id for m in await session.history()] == [m.id for m in messages[:2]]
    assert (await session.info()).message_count == 2
    with pytest.raises(MessageNotFound):
        await session.update(last_message_id=messages[4].id)  # cut away just now

    assert (await (await session.send("after the rewind")).outcome).status is TurnStatus.FINISHED
    after = await session.history()
    assert [m.text() for m in after[2:]] == ["after the rewind", "Turn 2."]


async def test_a_worker_without_a_payload_store_keeps_every_message_in_the_workflow(
    stack: LocalStack, redis: Redis, task_queue: str, tmp_path: Path, unique_id: str
) -> None:
    # A Temporal client without external storage: the commit activity refuses, and the
    # session must go on keeping its messages itself (it used to fail the workflow).
    temporal = await connect_temporal(stack.config.temporal_address)
    script = Script(
        name="talker", delay=0, chunk_size=3000, turns=[[ScriptStep(text="x" * 12_000)]]
    )
    talker = agent("talker", model=script)
    options = WorkerOptions(task_queue=task_queue, sandbox_root=tmp_path / "sandboxes")
    async with build_worker(temporal, redis, [talker], options):
        session = (
            SessionClient(temporal, redis, task_queue=task_queue).agent("talker").session(unique_id)
        )
        for n in range(3):
            outcome = await (await session.send(f"turn {n}")).outcome
            assert outcome.status is TurnStatus.FINISHED, outcome
        history = await session.history()
        assert [m.text() for m in history[1::2]] == ["x" * 12_000] * 3
        description = await temporal.get_workflow_handle(session.workflow_id).describe()
        assert description.status is WorkflowExecutionStatus.RUNNING
