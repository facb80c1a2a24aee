"""No reader hangs on a run that ended mid-answer.

Terminate (from the Temporal UI, here through Temporal's API) runs no workflow code, so
nothing of ours writes the answer's end; the readers notice instead
(`streams.ended_runs`). Full stack: the dozer agent's tool runs `sleep 889`, so its
answer is open, and silent, when the run is terminated. Every reader ends with an
`error` saying the run was terminated: the Python client's `stream()` (one answer, or
following), the gateway's SSE (`error`, then `[DONE]`) and the AI SDK `/api/chat`
stream, the CLI's `send` and `tail`, and readers that connect afterwards. A running session whose answer waits
for an approval, silent for a long time, keeps its readers.

The bounds are generous: the point is that readers end, not how fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.chunks import (
    SESSION_END_TYPE,
    ErrorChunk,
    StartChunk,
    is_approval_status,
    session_end_chunk,
)
from sessionflow.cli.localstack import LocalStack, free_port
from sessionflow.client.client import SessionClient
from sessionflow.client.ended import run_end_text
from sessionflow.client.session import Session
from sessionflow.streams.ended_runs import RUN_END_SOURCE, EndedRuns, RunEnd, record_end
from sessionflow.streams.keys import StreamKeys
from sessionflow.streams.publisher import StepStream, StreamPublisher
from sessionflow.streams.reader import StreamEvent, StreamReader
from tests.agents import approval_agent, sleeping_agent
from tests.conftest import StartWorker
from tests.sse import Frame, frames
from tests.test_cli_sessions import Cli, read_until, until_served

# How long a reader may take to end once its run is terminated (it checks within a few
# seconds of falling silent).
ENDS_WITHIN = 30.0
REASON = "runaway costs"

# A tool call that runs until its run is gone.
dozer_agent = sleeping_agent("dozer", 889)


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def tool_running(session: Session, message_id: str) -> list[StreamEvent]:
    """Read the answer until its tool call has started (the answer is open, silent)."""
    seen: list[StreamEvent] = []
    async for event in session.stream(message_id=message_id):
        seen.append(event)
        if event.type == "tool-input-available":
            return seen
    raise AssertionError(f"the answer ended before its tool ran: {[e.type for e in seen]}")


async def terminate(temporal: Client, session: Session) -> None:
    await temporal.get_workflow_handle(session.workflow_id).terminate(reason=REASON)


def assert_terminated_error(event: StreamEvent) -> None:
    assert event.type == "error", event
    text = getattr(event.chunk, "error_text", "")
    assert "the session's run was terminated" in text and REASON in text, text


async def test_open_and_later_readers_of_a_terminated_answer_end_with_an_error(
    start_worker: StartWorker, temporal: Client, unique_id: str
) -> None:
    client = await start_worker([dozer_agent])
    session = client.agent("dozer").session(unique_id)
    result = await session.send("doze")
    answer = result.assistant_message_id
    await tool_running(session, answer)
    # Readers open while it is terminated: one of the answer, one following the session.
    reading = asyncio.create_task(collect(result.stream()))
    following = asyncio.create_task(collect(session.stream(after="0-0", follow=True)))
    await terminate(temporal, session)

    read = await asyncio.wait_for(reading, ENDS_WITHIN)
    assert read[0].type == "start" and read[0].message_id == answer
    assert_terminated_error(read[-1])
    assert read[-1].message_id == answer, "the end belongs to the open answer"
    followed = await asyncio.wait_for(following, ENDS_WITHIN)
    assert_terminated_error(followed[-1])
    end = read[-1].id
    assert followed[-1].id == end, "one end, recorded once, seen by every reader"
    assert [e.id for e in followed if e.type == "error"] == [end]

    # Readers that connect afterwards end at once, with the same end.
    for later in (
        session.stream(),  # the newest answer, from its start
        result.stream(),
        session.stream(after=read[-2].id),  # reconnecting by cursor
        session.stream(after=read[0].id, follow=True),
    ):
        events = await asyncio.wait_for(collect(later), ENDS_WITHIN)
        assert events and events[-1].id == end
        assert_terminated_error(events[-1])
    assert not await session.is_streaming()
    # A reader whose cursor is the end itself has nothing left: it ends too, told why.
    [after_end] = await asyncio.wait_for(collect(session.stream(after=end)), ENDS_WITHIN)
    assert_terminated_error(after_end)
    assert await asyncio.wait_for(collect(session.stream(after=end, follow=True)), 30) == []


async def test_readers_that_come_after_the_termination_end_too(
    start_worker: StartWorker, temporal: Client, unique_id: str
) -> None:
    client = await start_worker([dozer_agent])
    session = client.agent("dozer").session(unique_id)
    first = await session.send("doze")
    await tool_running(session, first.assistant_message_id)
    # Queued behind the running answer: it never starts.
    queued = await session.send("and then?")
    waiting = asyncio.create_task(collect(queued.stream()))
    await terminate(temporal, session)  # no reader of the first answer is open

    # Two readers of the first answer come along: the first to fall silent writes the
    # end, once; both end with it.
    late = [asyncio.create_task(collect(first.stream())) for _ in range(2)]
    for events in await asyncio.wait_for(asyncio.gather(*late), ENDS_WITHIN):
        assert events[0].type == "start"
        assert_terminated_error(events[-1])
        assert events[-1].message_id == first.assistant_message_id
    [one, two] = [t.result()[-1].id for t in late]
    assert one == two
    # The reader of the answer that never started is told too, as its own end.
    [end] = await asyncio.wait_for(waiting, ENDS_WITHIN)
    assert_terminated_error(end)
    assert end.message_id == queued.assistant_message_id and end.id == one


def test_the_error_says_how_the_run_ended() -> None:
    assert run_end_text("failed: DiskOnFire: the disk is on fire").startswith(
        "the session's run failed: DiskOnFire: the disk is on fire; this answer ends here"
    )
    assert run_end_text("timed out: the run's time limit passed").startswith(
        "the session's run timed out: the run's time limit passed;"
    )
    assert run_end_text("cancelled").startswith("the session's run was cancelled;")


async def test_a_running_answer_waiting_for_approval_keeps_its_silent_reader(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send("run it")
    seen: list[StreamEvent] = []
    waiting = asyncio.Event()

    async def read() -> None:
        async for event in result.stream():
            seen.append(event)
            if is_approval_status(event.chunk):
                waiting.set()

    reading = asyncio.create_task(read())
    await asyncio.wait_for(waiting.wait(), ENDS_WITHIN)
    # Silent for several of the reader's checks (one per idle read, every 2 s): the run
    # still runs, so the reader stays.
    done, _ = await asyncio.wait([reading], timeout=8)
    assert not done, f"the reader of a running session ended: {[e.type for e in seen]}"
    [request] = [e.chunk for e in seen if e.type == "tool-approval-request"]
    await session.approve({"approval_id": request.approval_id, "approved": True})  # type: ignore[attr-defined]
    await asyncio.wait_for(reading, ENDS_WITHIN)
    assert seen[-1].type == "finish"
    assert not [e for e in seen if e.type == "error"]


# -- over the gateway ---------------------------------------------------------------------


@dataclass
class DozerGateway:
    url: str
    client: SessionClient
    headers: dict[str, str]

    def session(self, session_id: str) -> Session:
        return self.client.agent("dozer").session(f"acme:{session_id}")


@pytest.fixture
async def dozer_gateway(start_worker: StartWorker) -> AsyncIterator[DozerGateway]:
    from sessionflow.gateway.app import create_app
    from sessionflow.gateway.config import GatewayConfig
    from sessionflow.gateway.main import serve_gateway

    client = await start_worker([dozer_agent])
    key = "key-for-acme-0001"
    config = GatewayConfig(api_keys={key: "acme"}, default_agent="dozer", heartbeat_seconds=0.3)
    port, stop, started = free_port(), asyncio.Event(), asyncio.Event()
    app = create_app(client, config)
    task = asyncio.create_task(serve_gateway(app, "127.0.0.1", port, stop, started))
    await started.wait()
    yield DozerGateway(f"http://127.0.0.1:{port}", client, {"authorization": f"Bearer {key}"})
    stop.set()
    await task


async def until_tool_runs(sse: AsyncIterator[Frame]) -> None:
    async for frame in sse:
        if frame.data and frame.chunk["type"] == "tool-input-available":
            return
    raise AssertionError("the stream ended before the tool ran")


async def rest(sse: AsyncIterator[Frame]) -> list[Frame]:
    """The frames that follow, keep-alives left out."""
    return [f async for f in sse if f.comment is None]


def assert_ends_with_error_then_done(got: list[Frame]) -> None:
    assert got[-1].data == "[DONE]", got[-3:]
    error = got[-2].chunk
    assert error["type"] == "error", got[-3:]
    assert "the session's run was terminated" in error["errorText"]
    assert REASON in error["errorText"]
    assert got[-2].id is not None, "the end has an event id to resume from"


async def test_sse_readers_of_a_terminated_answer_get_an_error_then_done(
    dozer_gateway: DozerGateway, temporal: Client, unique_id: str
) -> None:
    gw = dozer_gateway
    chat = {
        "id": unique_id,
        "trigger": "submit-message",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "doze"}]}],
    }
    stream_url = f"{gw.url}/v1/sessions/{unique_id}/stream"
    async with httpx.AsyncClient(timeout=ENDS_WITHIN) as http:
        async with (
            http.stream("POST", f"{gw.url}/api/chat", json=chat, headers=gw.headers) as chat_sse,
            http.stream("GET", stream_url, headers=gw.headers) as session_sse,
        ):
            assert chat_sse.status_code == 200 and session_sse.status_code == 200
            chat_frames, session_frames = frames(chat_sse), frames(session_sse)
            await until_tool_runs(chat_frames)
            await until_tool_runs(session_frames)
            await terminate(temporal, gw.session(unique_id))
            chat_rest, session_rest = await asyncio.gather(rest(chat_frames), rest(session_frames))
        assert_ends_with_error_then_done(chat_rest)
        assert_ends_with_error_then_done(session_rest)
        assert chat_rest[-2].id == session_rest[-2].id

        # Connecting afterwards: the answer from its start, ending the same way at once.
        async with http.stream("GET", stream_url, headers=gw.headers) as later:
            again = await rest(frames(later))
        assert again[0].chunk["type"] == "start"
        assert_ends_with_error_then_done(again)
        # The AI SDK's resume: no answer is streaming any more.
        resumed = await http.get(f"{gw.url}/api/chat/{unique_id}/stream", headers=gw.headers)
        assert resumed.status_code == 204


# -- the CLI -------------------------------------------------------------------------------


async def test_cli_send_and_tail_of_a_terminated_answer_end_saying_so(
    stack: LocalStack,
    start_worker: StartWorker,
    temporal: Client,
    task_queue: str,
    unique_id: str,
) -> None:
    client = await start_worker([dozer_agent])
    cli = Cli(stack, task_queue)
    await until_served(client, task_queue, {"dozer"})
    sender = await cli.start("send", unique_id, "doze")
    assert sender.stdout is not None
    said = bytearray()
    await read_until(sender.stdout, "sleep 889", said)  # its tool call runs
    tailer = await cli.start("tail", unique_id, "--json")
    assert tailer.stdout is not None
    tailed = bytearray()
    await read_until(tailer.stdout, '"tool-input-available"', tailed)

    await terminate(temporal, client.agent("dozer").session(f"acme:{unique_id}"))
    out, err = await asyncio.wait_for(sender.communicate(), ENDS_WITHIN)
    assert sender.returncode != 0
    told = said.decode() + out.decode() + err.decode()
    assert "the session's run was terminated" in told and REASON in told, told
    rest, _ = await asyncio.wait_for(tailer.communicate(), ENDS_WITHIN)
    assert tailer.returncode == 0
    last = json.loads((tailed + rest).decode().splitlines()[-1])
    assert last["chunk"]["type"] == "error" and REASON in last["chunk"]["errorText"]


# -- one check per session, shared by its readers -----------------------------------------


async def test_readers_of_one_session_share_one_rate_limited_check() -> None:
    asked: list[str] = []
    release = asyncio.Event()
    ended = {"wf-ended": RunEnd("run-1", "the session's run was terminated")}
    now = [0.0]

    async def probe(workflow_id: str) -> RunEnd | None:
        asked.append(workflow_id)
        await release.wait()
        return ended.get(workflow_id)

    runs = EndedRuns(probe, clock=lambda: now[0])
    # A hundred readers of one session fall silent at once: one probe answers them all.
    checks = [asyncio.create_task(runs.check("wf-running", idle_for=2)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*checks) == [None] * 100
    assert asked == ["wf-running"]
    # Within the age a reader accepts, the answer is reused; past it, asked again.
    now[0] = 1.5
    assert await runs.check("wf-running", idle_for=2) is None
    assert asked == ["wf-running"]
    now[0] = 2.5
    await runs.check("wf-running", idle_for=2)
    assert asked == ["wf-running"] * 2
    # A reader silent for long accepts an older answer (a quarter of its wait).
    now[0] = 10.0
    await runs.check("wf-running", idle_for=60)
    assert asked == ["wf-running"] * 2
    # Another session is its own question; its end is told to every reader.
    assert await runs.check("wf-ended", idle_for=2) == ended["wf-ended"]
    assert asked[-1] == "wf-ended"


async def test_a_probe_that_fails_counts_as_running() -> None:
    async def probe(workflow_id: str) -> RunEnd | None:
        raise ConnectionError("Temporal is down")

    assert await EndedRuns(probe).check("wf", idle_for=5) is None


async def test_a_run_end_is_recorded_once_per_run_and_never_into_a_gone_stream(
    redis: Redis, unique_id: str
) -> None:
    workflow_id = f"session:dozer:{unique_id}"
    keys = StreamKeys.for_workflow(workflow_id)
    end = RunEnd("run-1", "the session's run was terminated: by a test")
    # No stream (never written, or erased by a delete): nothing is written, no key made.
    assert await record_end(redis, keys, end) is None
    assert not await redis.exists(keys.chunks, keys.index)

    publisher = StreamPublisher(redis)
    await publisher.publish(StepStream(workflow_id, "m1", 0), [StartChunk(message_id="m1")])
    first = await record_end(redis, keys, end)
    assert first is not None and await record_end(redis, keys, end) == first
    reader = StreamReader(redis)
    newest = await reader.newest_event(workflow_id)
    assert newest is not None and newest.id == first
    assert newest.message_id == "m1" and newest.source == RUN_END_SOURCE
    assert newest.chunk == ErrorChunk(error_text=end.text)
    # A later run of the session (a reset) that ends too gets an end of its own, which
    # belongs to no answer: none was open.
    second = await record_end(redis, keys, RunEnd("run-2", "the session's run failed"))
    assert second is not None and second != first
    newest = await reader.newest_event(workflow_id)
    assert newest is not None and newest.message_id == ""
    # A session that ended by itself keeps its own end last.
    await end_stream_chunk(publisher, workflow_id)
    ended = await reader.newest_event(workflow_id)
    assert ended is not None and ended.type == SESSION_END_TYPE
    assert await record_end(redis, keys, RunEnd("run-3", "the run timed out")) == ended.id
    await redis.delete(keys.chunks, keys.index)


async def end_stream_chunk(publisher: StreamPublisher, workflow_id: str) -> None:
    """The `data-session-end` chunk a close writes, without the erasure that follows."""
    where = StepStream(workflow_id, message_id="", step=-1, source="workflow")
    await publisher.publish(where, [session_end_chunk("closed")])
