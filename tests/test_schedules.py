"""Scheduled turns: a message sent to a session on an interval or a cron, with Temporal
Schedules, through the Python client, HTTP and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.schedules import parse_every
from sessionflow.client.session import Session
from sessionflow.contract import TurnStatus
from sessionflow.errors import InvalidInput, ScheduleNotFound
from sessionflow.messages import Role
from sessionflow.providers.scripted import Script, ScriptStep
from tests.conftest import Gateway, StartWorker
from tests.test_cli_chat import spawn

ticker = agent(
    "ticker",
    model=Script(name="ticker", delay=0, turns=[[ScriptStep(text="Tock: {last_user_text}")]]),
)


async def _user_texts(session: Session) -> list[str]:
    try:
        return [m.text() for m in await session.history() if m.role is Role.USER]
    except Exception:  # the schedule has not started the session yet
        return []


async def _until(check: Callable[[], object], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[misc]
            await asyncio.sleep(0.2)


def test_intervals_and_bad_schedules_are_refused_before_anything_is_created() -> None:
    assert parse_every("90s") == timedelta(seconds=90)
    assert parse_every("2h30m") == timedelta(hours=2, minutes=30)
    assert parse_every("1d") == timedelta(days=1)
    assert parse_every(5) == timedelta(seconds=5)
    for bad in ("soon", "1x", "0.5s", "", "1h soon"):
        with pytest.raises(InvalidInput):
            parse_every(bad)


async def test_a_schedule_fires_repeatedly_into_history_pauses_resumes_and_is_deleted(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([ticker])
    session = client.agent(ticker).session(unique_id)
    with pytest.raises(InvalidInput, match="one of the two"):
        await session.schedule("tick", every="1s", cron="* * * * *")
    with pytest.raises(InvalidInput, match="if_busy"):
        await session.schedule("tick", every="1s", if_busy="sometimes")

    handle = await session.schedule("tick", every="1s", name="ticks")
    with pytest.raises(InvalidInput, match="already has a schedule"):
        await session.schedule("tock", every="1h", name="ticks")
    # It fires at least twice, and each message reaches the session and is answered.
    await _until(lambda: _has_at_least(session, 2), timeout=45)
    history = await session.history()
    assert [m.text() for m in history if m.role is Role.USER][:2] == ["tick", "tick"]
    assert any(m.text() == "Tock: tick" for m in history if m.role is Role.ASSISTANT)

    info = await handle.describe()
    assert (info.session_id, info.agent, info.name) == (unique_id, "ticker", "ticks")
    assert (info.message, info.every, info.cron, info.if_busy) == (
        "tick",
        timedelta(seconds=1),
        None,
        "enqueue",
    )
    assert info.schedule_id == f"schedule:ticker:{unique_id}:ticks"
    assert info.last_run is not None and not info.paused

    await handle.pause()
    assert (await handle.describe()).paused
    # A firing already under way still lands: wait for it, and for its answer.
    raw = client.temporal.get_schedule_handle(handle.schedule_id)

    async def settled() -> bool:
        info = await session.info()
        running = (await raw.describe()).info.running_actions
        return not running and not info.busy and info.queued == 0

    await _until(settled)
    paused_at = len(await _user_texts(session))
    await asyncio.sleep(3)
    assert len(await _user_texts(session)) == paused_at  # paused: nothing more

    await handle.trigger()  # once, now, paused or not
    await _until(lambda: _has_at_least(session, paused_at + 1))

    listed = []
    for _ in range(50):  # Temporal's listing lags a moment behind
        listed = await session.schedules()
        if listed:
            break
        await asyncio.sleep(0.2)
    assert [(s.name, s.paused) for s in listed] == [("ticks", True)]
    assert [s.name for s in await client.schedules.list(session_id=unique_id, agent="ticker")] == [
        "ticks"
    ]

    await handle.delete()
    with pytest.raises(ScheduleNotFound):
        await handle.describe()
    with pytest.raises(ScheduleNotFound):
        await session.get_schedule("ticks").pause()


async def test_a_cron_schedule_is_kept_as_given(start_worker: StartWorker, unique_id: str) -> None:
    client = await start_worker([ticker])
    handle = await client.schedules.create(
        unique_id, "good morning", agent="ticker", cron="0 9 * * mon-fri", if_busy="interrupt"
    )
    try:
        info = await handle.describe()
        assert (info.cron, info.every, info.if_busy) == ("0 9 * * mon-fri", None, "interrupt")
        assert info.next_runs and all(t.hour == 9 for t in info.next_runs)
    finally:
        await handle.delete()
    with pytest.raises(InvalidInput, match="Temporal refused"):
        await client.schedules.create(unique_id, "x", agent="ticker", cron="not a cron")


async def test_schedules_over_http_are_scoped_to_the_tenant(
    gateway: Gateway, unique_id: str
) -> None:
    acme = httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("acme"))
    globex = httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("globex"))
    async with acme, globex:
        path = f"/v1/sessions/{unique_id}/schedules"
        bad = await acme.post(path, json={"message": "tick", "every": "soon"})
        assert bad.status_code == 422
        made = await acme.post(path, json={"message": "tick", "every": "1s", "name": "ticks"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert (body["name"], body["sessionId"], body["every"], body["ifBusy"]) == (
            "ticks",
            unique_id,
            1.0,
            "enqueue",
        )
        # Another tenant sees nothing of it.
        assert (await globex.get(f"{path}/ticks")).status_code == 404
        assert (await globex.post(f"{path}/ticks/pause")).status_code == 404

        history = f"/v1/sessions/{unique_id}/history"

        async def answered_twice() -> bool:
            got = await acme.get(history)
            if got.status_code != 200:
                return False
            users = [m for m in got.json()["messages"] if m["role"] == "user"]
            return len(users) >= 2

        await _until(answered_twice, timeout=45)
        assert (await acme.post(f"{path}/ticks/pause")).status_code == 200
        assert (await acme.get(f"{path}/ticks")).json()["paused"] is True
        assert (await acme.post(f"{path}/ticks/resume")).status_code == 200
        assert (await acme.get(f"{path}/ticks")).json()["paused"] is False

        async def listed() -> bool:
            rows = (await acme.get("/v1/schedules")).json()["schedules"]
            return [(r["sessionId"], r["name"]) for r in rows] == [(unique_id, "ticks")]

        await _until(listed, timeout=15)
        assert (await globex.get("/v1/schedules")).json()["schedules"] == []
        assert (await acme.delete(f"{path}/ticks")).status_code == 204
        assert (await acme.get(f"{path}/ticks")).status_code == 404


async def _has_at_least(session: Session, count: int) -> bool:
    return len(await _user_texts(session)) >= count


@pytest.mark.slow
async def test_the_cli_creates_lists_pauses_and_deletes_a_schedule(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([ticker])

    async def cli(*args: str) -> tuple[int, str]:
        proc = await spawn(stack, task_queue, "schedule", *args, "--tenant", "acme")
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        return proc.returncode or 0, (out + err).decode()

    code, out = await cli("create", unique_id, "--agent", "ticker", "--every", "1s", "-m", "tick")
    assert code == 0, out
    assert f"to {unique_id} every 0:00:01" in out
    session = client.agent("ticker").session(f"acme:{unique_id}")
    await _until(lambda: _has_at_least(session, 2), timeout=45)

    for _ in range(50):  # Temporal's listing lags a moment behind
        code, out = await cli("list")
        if unique_id in out:
            break
        await asyncio.sleep(0.2)
    assert code == 0 and "tick" in out and "active" in out, out
    # The session's only schedule: no name needed.
    code, out = await cli("pause", unique_id, "--agent", "ticker")
    assert code == 0 and "paused" in out, out
    (listed,) = await session.schedules()
    info = await session.get_schedule(listed.name).describe()  # the listing may lag
    assert info.paused
    code, out = await cli("delete", unique_id, info.name, "--agent", "ticker")
    assert code == 0, out
    with pytest.raises(ScheduleNotFound):
        await session.get_schedule(info.name).describe()
    code, out = await cli("pause", unique_id, info.name, "--agent", "ticker")
    assert code == 1 and "has no schedule" in out, out
    code, out = await cli("create", unique_id, "--agent", "ticker", "-m", "x")
    assert code == 2 and "`every` or `cron`" in out, out


slow_talker = agent(
    "slowtalk",
    model=Script(
        name="slowtalk",
        delay=0.05,
        chunk_size=2,
        turns=[[ScriptStep(text="Let me think about that slowly, " * 40 + "{last_user_text}")]],
    ),
)


async def test_a_firing_with_if_busy_interrupt_stops_the_running_turn(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([slow_talker])
    session = client.agent(slow_talker).session(unique_id)
    running = await session.send("first")
    await _until(lambda: session.is_streaming(), timeout=30)
    handle = await session.schedule("second", every="1h", paused=True, if_busy="interrupt")
    try:
        await handle.trigger()
        assert (await running.outcome).status is TurnStatus.INTERRUPTED
        await _until(lambda: _has_at_least(session, 2))
    finally:
        await handle.delete()
    assert (await _user_texts(session))[:2] == ["first", "second"]


async def test_the_readme_schedules_block_runs_as_it_stands(
    start_worker: StartWorker, unique_id: str
) -> None:
    """README.md's `<!-- example:schedules -->` block, against a real session."""
    from tests.test_readme_examples import run_async

    client = await start_worker([ticker])
    session = client.agent(ticker).session(unique_id)
    done = await run_async("example:schedules", {"session": session, "client": client})
    try:
        info = done["info"]
        assert (info.message, info.every, info.paused) == (
            "Summarise the new tickets",
            timedelta(hours=1),
            False,
        )
        with pytest.raises(ScheduleNotFound):
            await session.get_schedule("morning").describe()
        # `trigger` fired once: the message reaches the session.
        await _until(lambda: _has_at_least(session, 1))
        assert await _user_texts(session) == ["Summarise the new tickets"]
    finally:
        await done["handle"].delete()


async def test_deleting_a_session_deletes_its_schedules(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([ticker])
    session = client.agent(ticker).session(unique_id)
    await (await session.send("hello")).done
    handle = await session.schedule("tick", every="1h", name="hourly")
    other = await client.schedules.create(f"{unique_id}-other", "tick", agent="ticker", every="1h")
    try:

        async def listed() -> bool:
            return bool(await session.schedules())

        await _until(listed)  # the delete finds schedules as Temporal lists them
        await session.delete()
        with pytest.raises(ScheduleNotFound):
            await handle.describe()
        assert (await other.describe()).session_id == f"{unique_id}-other"  # not its own
    finally:
        await other.delete()
