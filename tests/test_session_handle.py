"""The session handle's smaller verbs: input forms, paging, update, sandbox, errors."""

from __future__ import annotations

import pytest

from sessionflow.contract import TurnStatus
from sessionflow.errors import MessageNotFound, SandboxNotFound, SessionBusy, SessionNotFound
from sessionflow.messages import TextPart
from sessionflow.sandbox.base import SandboxStatus
from tests.agents import streaming_agent, tool_agent
from tests.conftest import StartWorker


async def test_send_accepts_every_input_form(start_worker: StartWorker, unique_id: str) -> None:
    client = await start_worker([tool_agent])
    session = client.session(unique_id, agent="tooling")

    def text(value: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": value}]

    forms = [
        "plain text",
        {"role": "user", "id": "m-ui", "metadata": {"from": "web"}, "parts": text("ui message")},
        [*text("parts "), *text("list")],
        {"type": "message", "message": {"role": "user", "parts": text("wrapped")}},
    ]
    for form in forms:
        result = await session.send(form)
        assert (await result.outcome).status is TurnStatus.FINISHED
    users = (await session.history())[0::2]
    assert [m.text() for m in users] == ["plain text", "ui message", "parts list", "wrapped"]
    assert users[1].id == "m-ui" and users[1].metadata == {"from": "web"}


async def test_history_pages_and_rewinds(start_worker: StartWorker, unique_id: str) -> None:
    client = await start_worker([streaming_agent])
    session = client.session(unique_id, agent="streamer")
    for text in ("one", "two", "three"):
        await (await session.send(text)).done
    everything = await session.history()
    assert len(everything) == 6
    assert await session.history(offset=2, limit=2) == everything[2:4]
    assert await session.history(offset=6) == []

    await session.update(last_message_id=everything[3].id)
    assert await session.history() == everything[:4]
    with pytest.raises(MessageNotFound):
        await session.update(last_message_id="msg_nope")
    # The next turn continues from the rewound conversation.
    await (await session.send("four")).done
    history = await session.history()
    assert [m.parts[0] for m in history[4:5]] == [TextPart(text="four")]


async def test_rewinding_a_busy_session_is_refused(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    session = client.session(unique_id, agent="streamer")
    result = await session.send("long")
    async for event in result.stream():
        if event.type == "text-delta":
            break
    with pytest.raises(SessionBusy):
        await session.update(last_message_id=(await session.history())[0].id)
    await session.interrupt()
    await result.done


async def test_the_sandbox_handle_creates_runs_and_switches_sandboxes(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.session(unique_id, agent="tooling")
    assert await session.sandbox.get_id() is None
    assert await session.sandbox.get_status() is None

    result = await session.sandbox.exec("printf", args=["%s|", "a b", "it's"], timeout=10)
    assert (result.exit_code, result.stdout) == (0, "a b|it's|")
    first_id = await session.sandbox.get_id()
    assert first_id is not None
    assert await session.sandbox.get_status() is SandboxStatus.RUNNING
    failing = await session.sandbox.exec("exit 7")
    assert failing.exit_code == 7

    other = client.session(unique_id + "-other", agent="tooling")
    await other.sandbox.exec("echo from-other > marker.txt")
    other_id = await other.sandbox.get_id()
    assert other_id not in (None, first_id)

    await session.update(sandbox_id=other_id)
    assert await session.sandbox.get_id() == other_id
    assert (await session.sandbox.exec("cat marker.txt")).stdout == "from-other\n"
    with pytest.raises(SandboxNotFound):
        await session.update(sandbox_id="sbx-missing")
    assert await session.sandbox.get_id() == other_id

    # send(sandbox_id=...) moves the session before the turn's tools run.
    third = client.session(unique_id + "-third", agent="tooling")
    done = await (await third.send("go", sandbox_id=first_id)).outcome
    assert done.status is TurnStatus.FINISHED
    assert await third.sandbox.get_id() == first_id


async def test_unknown_sessions_raise_session_not_found(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.session(unique_id, agent="tooling")
    for call in (session.history(), session.info(), session.usage(), session.interrupt()):
        with pytest.raises(SessionNotFound, match=unique_id):
            await call
