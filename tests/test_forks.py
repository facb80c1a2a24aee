"""Forks: `session.fork(new_id, at_message_id=...)`, `POST /v1/sessions/{id}/fork`.

A fork starts from its parent's history up to a message, by reference to the parent's
stored transcript segments (nothing of the transcript is copied), with the agent state
as of that message; deleting the parent leaves the fork whole.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import httpx
import pytest

from sessionflow.cli.localstack import LocalStack
from sessionflow.contract import SessionLimits, TurnStatus
from sessionflow.errors import MessageNotFound, SessionExists, SessionNotFound
from sessionflow.storage.namespaces import HOLDS_DIR, SESSIONS_DIR, session_namespace
from tests.agents import counter_agent, streaming_agent
from tests.conftest import Gateway, StartWorker

# Commit after every step: forks then refer to committed segments, and cut them.
COMMIT_OFTEN = SessionLimits(commit_transcript_after_bytes=1)
MIB = 1024 * 1024


def store_of(stack: LocalStack) -> Path:
    return stack.config.data_dir / "payloads"


def namespace_bytes(store: Path, workflow_id: str) -> int:
    """Bytes the session's namespace holds in the file store."""
    directory = store / SESSIONS_DIR / session_namespace(workflow_id)
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


async def test_a_fork_at_an_earlier_message_answers_from_there_and_leaves_the_parent_be(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([counter_agent], limits=COMMIT_OFTEN)
    parent = client.agent(counter_agent).session(unique_id)
    for text in ("one", "two", "three"):
        assert (await (await parent.send(text)).outcome).status is TurnStatus.FINISHED
    before = await parent.history()
    assert [m.text() for m in before[1::2]] == [f"The counter is now {n}." for n in (1, 2, 3)]
    first_answer = before[1]

    fork = await parent.fork(f"{unique_id}-fork", at_message_id=first_answer.id)

    # History up to that message, and the state as of it (the counter at 1).
    assert [m.id for m in await fork.history()] == [m.id for m in before[:2]]
    assert (await fork.state()).count == 1
    answer = await fork.send("again")
    assert (await answer.outcome).status is TurnStatus.FINISHED
    forked = await fork.history()
    assert forked[-1].text() == "The counter is now 2."
    assert [m.id for m in forked[:2]] == [m.id for m in before[:2]]
    # The parent is as it was.
    assert await parent.history() == before
    assert (await parent.state()).count == 3
    # A fork at a user message keeps it, and the state before its turn.
    at_user = await parent.fork(f"{unique_id}-fork-2", at_message_id=before[2].id)
    assert [m.id for m in await at_user.history()] == [m.id for m in before[:3]]
    assert (await at_user.state()).count == 1
    # Without a message: the whole history, and the state now.
    whole = await parent.fork(f"{unique_id}-fork-3")
    assert await whole.history() == before
    assert (await whole.state()).count == 3

    with pytest.raises(MessageNotFound):
        await parent.fork(f"{unique_id}-fork-4", at_message_id="msg_nope")
    with pytest.raises(SessionExists):
        await parent.fork(f"{unique_id}-fork")


async def test_forking_a_50_mb_transcript_writes_no_more_than_forking_a_small_one(
    start_worker: StartWorker, unique_id: str, stack: LocalStack
) -> None:
    """Cost O(1) in transcript size, asserted on what the fork writes: the fork's own
    namespace in the payload store (its reference, its start input) and hold markers;
    none of the parent's 50 MB is copied. (Wall times are printed, not asserted.)"""
    client = await start_worker([streaming_agent], limits=COMMIT_OFTEN)
    store = store_of(stack)
    small = client.agent(streaming_agent).session(f"{unique_id}-small")
    await (await small.send("hi")).outcome
    big = client.agent(streaming_agent).session(f"{unique_id}-big")
    # Five messages of 10 MiB of files each (random, so they stay large compressed).
    for n in range(5):
        files = [
            {
                "type": "file",
                "mediaType": "application/octet-stream",
                "filename": f"blob-{n}-{i}.bin",
                "url": "data:application/octet-stream;base64,"
                + base64.b64encode(os.urandom(5 * MIB - 1024)).decode(),
            }
            for i in range(2)
        ]
        sent = await big.send({"role": "user", "parts": [{"type": "text", "text": "x"}, *files]})
        await sent.outcome
    transcript_bytes = sum(len(m.model_dump_json()) for m in await big.history())
    assert transcript_bytes > 50 * 1000 * 1000
    assert namespace_bytes(store, big.workflow_id) > 30 * MIB  # stored, compressed

    figures = {}
    for name, parent in (("small", small), ("big", big)):
        began = time.monotonic()
        fork = await parent.fork(f"{unique_id}-{name}-fork")
        figures[name] = time.monotonic() - began
        written = namespace_bytes(store, fork.workflow_id)
        assert written < 64 * 1024, f"forking {name} wrote {written} bytes"
        holds = store / SESSIONS_DIR / session_namespace(parent.workflow_id) / HOLDS_DIR
        assert [p.name for p in holds.iterdir()] == [session_namespace(fork.workflow_id)]
        assert len(await fork.history()) == len(await parent.history())
    print(f"fork of 1 message: {figures['small']:.3f} s; of 50 MB: {figures['big']:.3f} s")


async def test_deleting_the_parent_leaves_the_fork_whole_and_the_fork_frees_it(
    start_worker: StartWorker, unique_id: str, stack: LocalStack
) -> None:
    client = await start_worker([counter_agent], limits=COMMIT_OFTEN)
    store = store_of(stack)
    parent = client.agent(counter_agent).session(unique_id)
    for text in ("one", "two"):
        await (await parent.send(text)).outcome
    history = await parent.history()
    fork = await parent.fork(f"{unique_id}-fork", at_message_id=history[1].id)
    grandchild = await fork.fork(f"{unique_id}-fork-of-fork")

    await parent.delete()
    with pytest.raises(SessionNotFound):
        await parent.history()
    # The parent's segments stay while forks refer to them.
    assert namespace_bytes(store, parent.workflow_id) > 0
    assert [m.id for m in await fork.history()] == [m.id for m in history[:2]]
    answer = await fork.send("more")
    assert (await answer.outcome).status is TurnStatus.FINISHED
    assert (await fork.history())[-1].text() == "The counter is now 2."

    # The fork goes too: its fork still reads the grandparent's segments.
    await fork.delete()
    assert [m.id for m in await grandchild.history()] == [m.id for m in history[:2]]
    # The last one gone, every namespace is freed.
    await grandchild.delete()
    for session in (parent, fork, grandchild):
        assert namespace_bytes(store, session.workflow_id) == 0


async def test_fork_over_http_is_scoped_to_the_tenant(gateway: Gateway, unique_id: str) -> None:
    base = f"{gateway.url}/v1/sessions"
    auth, other = gateway.headers(), gateway.headers("globex")
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            f"{base}/{unique_id}/messages?agent=streamer", json={"message": "hi"}, headers=auth
        )
        message = sent.json()["assistantMessageId"]
        done = await http.get(
            f"{base}/{unique_id}/messages/{message}/outcome?agent=streamer&wait=30", headers=auth
        )
        assert done.json()["done"] is True
        # Another tenant sees no such session.
        refused = await http.post(
            f"{base}/{unique_id}/fork?agent=streamer", json={"newId": "x"}, headers=other
        )
        assert refused.status_code == 404
        forked = await http.post(
            f"{base}/{unique_id}/fork?agent=streamer",
            json={"newId": f"{unique_id}-b", "atMessageId": message},
            headers=auth,
        )
        assert forked.status_code == 201, forked.text
        assert forked.json() == {"sessionId": f"{unique_id}-b"}
        history = await http.get(f"{base}/{unique_id}-b/history?agent=streamer", headers=auth)
        assert [m["id"] for m in history.json()["messages"]][-1] == message
        assert (
            await http.get(f"{base}/{unique_id}-b/history?agent=streamer", headers=other)
        ).status_code == 404
        again = await http.post(
            f"{base}/{unique_id}/fork?agent=streamer", json={"newId": f"{unique_id}-b"},
            headers=auth,
        )  # fmt: skip
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "session_exists"


async def test_the_cli_forks_at_a_message_and_send_if_busy_reject_exits_1(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    from tests.agents import approval_agent
    from tests.test_cli_chat import spawn

    client = await start_worker([counter_agent, approval_agent], limits=COMMIT_OFTEN)
    parent = client.agent(counter_agent).session(unique_id)
    for text in ("one", "two"):
        await (await parent.send(text)).outcome
    history = await parent.history()
    proc = await spawn(
        stack, task_queue, "fork", unique_id, f"{unique_id}-cli", "--agent", "counter",
        "--at", history[1].id,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert f"forked {unique_id} into {unique_id}-cli" in out.decode()
    fork = client.agent(counter_agent).session(f"{unique_id}-cli")
    assert [m.id for m in await fork.history()] == [m.id for m in history[:2]]

    # A turn waits for approval: `send --if-busy reject` refuses at once, exit 1.
    waiting = client.agent(approval_agent).session(f"{unique_id}-busy")
    await waiting.send("go")
    while not (await waiting.info()).pending_approvals:
        await asyncio.sleep(0.05)
    proc = await spawn(
        stack, task_queue, "send", f"{unique_id}-busy", "--agent", "approver",
        "--if-busy", "reject", "hello?",
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1, (out + err).decode()
    assert "if_busy='reject'" in err.decode()
    assert (await waiting.info()).queued == 0


async def test_a_fork_needs_a_valid_new_id_and_an_idle_parent(
    start_worker: StartWorker, unique_id: str
) -> None:
    from sessionflow.errors import InvalidInput, SessionBusy
    from tests.agents import approval_agent

    client = await start_worker([approval_agent])
    parent = client.agent(approval_agent).session(unique_id)
    with pytest.raises(SessionNotFound):
        await parent.fork(f"{unique_id}-never")
    await parent.send("go")
    while not (await parent.info()).pending_approvals:
        await asyncio.sleep(0.05)
    with pytest.raises(InvalidInput):
        await parent.fork("has space")
    with pytest.raises(SessionBusy):
        await parent.fork(f"{unique_id}-busy")
    assert not await client.agent(approval_agent).session(f"{unique_id}-busy").exists()
