"""The reference Sessions API, exactly: what a stream without a cursor follows, what
`done` means, `agent.session(id)`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

import sessionflow
from sessionflow.cli.localstack import LocalStack
from sessionflow.client import Session, StreamEvent, default_client, use_client
from sessionflow.contract import TurnOutcome, TurnStatus
from sessionflow.errors import InvalidInput
from sessionflow.streams.assemble import assemble
from tests.agents import LONG_TEXT, streaming_agent
from tests.conftest import Gateway, StartWorker
from tests.sse import frames
from tests.test_gateway import as_events, wait_idle


def text_of(events: list[StreamEvent]) -> str:
    return assemble(events).text()


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    async def run() -> list[StreamEvent]:
        return [e async for e in stream]

    return await asyncio.wait_for(run(), 30)


# -- 1. a stream without a cursor follows the newest message sent -------------------


async def test_stream_right_after_send_is_the_new_answer(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    first = await session.send("one")
    assert text_of(await collect(session.stream())) == LONG_TEXT
    await first.done
    for word in ("two", "three"):
        result = await session.send(word)
        events = await collect(session.stream())
        assert {e.message_id for e in events} == {result.assistant_message_id}
        assert text_of(events) == f"Short answer to {word}."
        await result.done


async def test_stream_follows_an_answer_queued_behind_a_running_one(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    first = await session.send("one")  # a long answer, still streaming
    second = await session.send("two")
    # Another handle (another process, say) knows only the session.
    other = client.agent("streamer").session(unique_id)
    events = await collect(other.stream())
    assert {e.message_id for e in events} == {second.assistant_message_id}
    assert text_of(events) == "Short answer to two."
    # Following from there: nothing of the first answer.
    await first.done
    third = await session.send("three")
    followed: list[StreamEvent] = []
    async for event in session.stream(follow=True):
        followed.append(event)
        if event.type == "finish":
            break
    assert {e.message_id for e in followed} == {third.assistant_message_id}
    assert text_of(followed) == "Short answer to three."


async def test_sse_stream_right_after_posting_a_message_is_the_new_answer(
    gateway: Gateway, unique_id: str
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    async with httpx.AsyncClient(timeout=30) as http:
        for turn, word in enumerate(("one", "two", "three")):
            sent = await http.post(
                f"{base}/messages?agent=streamer",
                json={"message": word},
                headers=gateway.headers(),
            )
            assert sent.status_code == 202, sent.text
            async with http.stream(
                "GET", f"{base}/stream?agent=streamer", headers=gateway.headers()
            ) as response:
                got = [f async for f in frames(response) if f.comment is None]
            assert got[-1].data == "[DONE]"
            starts = [f.chunk for f in got[:-1] if f.chunk["type"] == "start"]
            assert [s.get("messageId") for s in starts] == [sent.json()["assistantMessageId"]]
            expected = LONG_TEXT if turn == 0 else f"Short answer to {word}."
            assert assemble(as_events(got)).text() == expected
            await wait_idle(gateway, unique_id, agent="streamer")


# -- 2. `done` is the end; `outcome` is how it ended --------------------------------


async def test_done_is_true_at_the_end_and_a_failed_outcome_is_falsy(
    start_worker: StartWorker, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    result = await session.send("one")
    assert await result.done is True
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FINISHED and outcome
    # Any process can wait for an answer by its id.
    assert await session.answer(result.assistant_message_id).done is True

    # A new session of an agent no worker serves is refused at send: each agent's
    # sessions go to its own task queue, where nothing would ever answer it.
    from sessionflow.client import calls
    from sessionflow.errors import WorkerUnavailable

    monkeypatch.setattr(calls, "WORKER_GRACE_SECONDS", 1.0)
    unserved = client.agent("ghost").session(unique_id + "-x")
    with pytest.raises(WorkerUnavailable, match="no worker serves agent 'ghost'"):
        await unserved.send("hi")
    assert not TurnOutcome(message_id="m", status=TurnStatus.FAILED)
    assert not TurnOutcome(message_id="m", status=TurnStatus.INTERRUPTED)


async def test_the_outcome_long_polls_over_http(gateway: Gateway, unique_id: str) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            f"{base}/messages?agent=streamer", json={"message": "long"}, headers=gateway.headers()
        )
        message_id = sent.json()["assistantMessageId"]
        url = f"{base}/messages/{message_id}/outcome?agent=streamer"
        # The long answer takes a few seconds: a short wait ends before it does.
        pending = await http.get(f"{url}&wait=0", headers=gateway.headers())
        assert pending.status_code == 202, pending.text
        assert pending.json() == {
            "messageId": message_id,
            "done": False,
            "status": None,
            "error": None,
            "errorType": None,
        }
        ended = await http.get(f"{url}&wait=20", headers=gateway.headers())
        assert ended.status_code == 200, ended.text
        assert ended.json() == {
            "messageId": message_id,
            "done": True,
            "status": "finished",
            "error": None,
            "errorType": None,
        }
        bad = await http.get(f"{url}&wait=600", headers=gateway.headers())
        assert bad.status_code == 422


# -- 3. agent.session(id) ------------------------------------------------------------


async def test_agent_session_with_a_client_given_once(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    use_client(client)
    try:
        session = streaming_agent.session(unique_id)  # synchronous
        assert isinstance(session, Session)
        assert (session.id, session.agent) == (unique_id, "streamer")
        result = await session.send("one")
        assert (await result.outcome).status is TurnStatus.FINISHED
        # On a client of one's own, by name: the same session.
        again = client.agent("streamer").session(unique_id)
        assert len(await again.history()) == 2
        # One way to open a session: the older spellings are gone.
        assert not hasattr(sessionflow, "session")
        assert not hasattr(sessionflow, "agent_session")
        assert not hasattr(client, "session")
    finally:
        use_client(None)


async def test_agent_session_connects_from_the_environment_on_first_use(
    start_worker: StartWorker,
    stack: LocalStack,
    task_queue: str,
    unique_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_worker([streaming_agent])
    # Made with nothing to connect to: no network call happens here.
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    session = streaming_agent.session(unique_id)
    stream = session.stream()  # nor here
    # The environment is read when the handle is first used.
    monkeypatch.setenv("TEMPORAL_ADDRESS", stack.config.temporal_address)
    monkeypatch.setenv("REDIS_URL", stack.config.redis_url)
    monkeypatch.setenv("SESSIONFLOW_TASK_QUEUE", task_queue)
    monkeypatch.setenv("SESSIONFLOW_PAYLOAD_STORE", stack.config.payload_store or "")
    result = await session.send("one")
    assert text_of(await collect(stream)) == LONG_TEXT
    assert await result.done is True
    client = await default_client()
    assert client is await default_client()
    await client.close()
    use_client(None)


def test_agent_session_needs_no_event_loop_and_checks_the_id() -> None:
    session = streaming_agent.session("chat-1")
    assert session.workflow_id.endswith("chat-1")
    with pytest.raises(InvalidInput):
        streaming_agent.session("has space")
