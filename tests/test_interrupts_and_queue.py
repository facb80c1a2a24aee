"""Interrupts, queued messages, and continue-as-new in the middle of a session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sessionflow.contract import SessionLimits, SessionStatus, TurnStatus
from sessionflow.errors import InvalidInput
from sessionflow.messages import MessageStatus, ToolState
from tests.agents import LONG_TEXT, counter_agent, sleeper_agent, streaming_agent
from tests.conftest import StartWorker
from tests.test_local_sandbox import host_processes


async def test_interrupt_while_text_streams_keeps_the_partial_text(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    result = await session.send("tell me everything")
    events = []
    stream = result.stream()
    async for event in stream:
        events.append(event)
        if sum(e.type == "text-delta" for e in events) == 20:
            break
    await session.interrupt()
    async for event in stream:
        events.append(event)
    outcome = await result.outcome

    assert outcome.status is TurnStatus.INTERRUPTED
    assert events[-1].type == "abort"
    reply = (await session.history())[-1]
    assert reply.status is MessageStatus.INTERRUPTED
    streamed = "".join(e.chunk.delta for e in events if e.type == "text-delta")  # type: ignore[attr-defined]
    # Cut where it was stopped, well before its end (how fast: bench.interrupt_latency).
    assert 80 <= len(reply.text()) < len(LONG_TEXT)
    assert LONG_TEXT.startswith(reply.text())
    assert reply.text() == streamed
    assert (await session.info()).status is SessionStatus.INTERRUPTED

    following = await session.send("short please")
    assert (await following.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "Short answer to short please."


async def test_interrupt_kills_a_running_command(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    client = await start_worker([sleeper_agent])
    session = client.agent("sleeper").session(unique_id)
    result = await session.send("sleep")
    async for event in result.stream():
        if event.type == "data-status" and event.chunk.data["status"] == "running-tool":  # type: ignore[attr-defined]
            break
    while not list(sandbox_root.glob("*/shell.pid")):
        await asyncio.sleep(0.02)
    await session.interrupt()
    outcome = await result.outcome
    assert outcome.status is TurnStatus.INTERRUPTED
    # The pid in the file is the sandbox's own (its pid namespace): look for the command.
    for _ in range(50):
        if not host_processes("sleep 1000"):
            break
        await asyncio.sleep(0.02)
    assert host_processes("sleep 1000") == []
    (part,) = (await session.history())[-1].tool_parts()
    assert part.state is ToolState.OUTPUT_ERROR and part.error_text == "interrupted by the user"
    again = await session.send("hello")
    assert (await again.outcome).status is TurnStatus.FINISHED


async def test_messages_sent_during_a_turn_are_answered_in_order(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    first = await session.send("first")
    later = [await session.send(text) for text in ("second", "third", "fourth")]
    assert (await session.info()).queued == 3
    outcomes = [await r.outcome for r in (first, *later)]
    assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 4
    history = await session.history()
    assert [m.text() for m in history[0::2]] == ["first", "second", "third", "fourth"]
    assert [m.id for m in history[1::2]] == [r.assistant_message_id for r in (first, *later)]
    assert history[1].text() == LONG_TEXT
    # The turns ran one after another, answering what they were asked... in order.
    assert [m.text() for m in history[3::2]] == [
        f"Short answer to {t}." for t in ("second", "third", "fourth")
    ]


async def test_interrupt_if_streaming_stops_the_running_turn_first(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    first = await session.send("long one")
    async for event in first.stream():
        if event.type == "text-delta":
            break
    second = await session.send("actually, stop", interrupt_if_streaming=True)
    assert (await first.outcome).status is TurnStatus.INTERRUPTED
    assert (await second.outcome).status is TurnStatus.FINISHED
    history = await session.history()
    assert history[1].status is MessageStatus.INTERRUPTED
    assert history[3].text() == "Short answer to actually, stop."


async def test_interrupt_with_the_last_part_seen_cuts_the_answer_there(
    start_worker: StartWorker, unique_id: str
) -> None:
    """The reference's `interruptIfStreaming: {lastPart: {index, part}}`: history keeps
    exactly what the user saw, not what the model streamed after it."""
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    first = await session.send("long one")
    shown = ""
    async for event in first.stream():
        if event.type == "text-delta":
            shown += event.chunk.delta  # type: ignore[attr-defined]
            if len(shown) >= 40:
                break
    # Parts as the AI SDK builds them: step-start, then the text part being streamed.
    index = 1
    cut = {"last_part": {"index": index, "part": {"type": "text", "text": shown}}}
    second = await session.send("stop there", interrupt_if_streaming=cut)
    assert (await first.outcome).status is TurnStatus.INTERRUPTED
    assert (await second.outcome).status is TurnStatus.FINISHED
    answer = (await session.history())[1]
    assert answer.status is MessageStatus.INTERRUPTED
    assert [p.type for p in answer.parts] == ["step-start", "text"]
    assert answer.text() == shown and LONG_TEXT.startswith(shown)
    assert len(shown) < len(LONG_TEXT)


async def test_a_malformed_last_part_is_refused_before_anything_is_sent(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.agent("streamer").session(unique_id)
    for bad in ({"last_part": {"index": -1, "part": {}}}, {"lastPart": {"part": {}}}, "yes"):
        with pytest.raises(InvalidInput, match="interrupt_if_streaming"):
            await session.send("hi", interrupt_if_streaming=bad)  # type: ignore[arg-type]
    assert not await session.exists()


async def test_continue_as_new_mid_session_keeps_history_state_usage_and_queue(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker(
        [counter_agent], limits=SessionLimits(continue_as_new_after_events=25)
    )
    session = client.agent(counter_agent).session(unique_id)
    results = [await session.send(f"count {i}") for i in range(4)]
    outcomes = [await r.outcome for r in results]
    assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 4

    info = await session.info()
    assert info.run_count >= 3, "the lowered threshold should force continue-as-new"
    history = await session.history()
    assert len(history) == 8
    assert [m.text() for m in history[1::2]] == [f"The counter is now {n}." for n in (1, 2, 3, 4)]
    assert (await session.state()).count == 4
    usage = await session.usage()
    assert len(usage.steps) == 8
    assert usage.total.output_tokens == sum(s.usage.output_tokens for s in usage.steps)
    assert info.usage == usage.total
    # Earlier turns' outcomes are still answerable after the runs changed.
    assert (await results[0].outcome).status is TurnStatus.FINISHED


async def test_waiting_for_each_answer_while_every_turn_continues_as_new(
    start_worker: StartWorker, unique_id: str
) -> None:
    # Every turn ends its run; the next message (and the wait for its answer) races the
    # continue-as-new. Each wait must reach the run that answers it.
    client = await start_worker(
        [counter_agent], limits=SessionLimits(continue_as_new_after_events=1)
    )
    session = client.agent(counter_agent).session(unique_id)
    for i in range(12):
        result = await session.send(f"count {i}")
        assert await asyncio.wait_for(result.done, 60) is True
        assert (await result.outcome).status is TurnStatus.FINISHED
    assert (await session.state()).count == 12
    assert (await session.info()).run_count >= 12
