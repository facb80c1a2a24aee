"""A session's end on the real stack (Temporal dev server, Redis, the file payload
store, local sandboxes): after a close a new session under the same id starts with an
empty stream, and after a delete nothing of the session remains anywhere it was
stored: no Redis key, no payload store file, no Temporal run, no sandbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.chunks import SESSION_END_TYPE
from sessionflow.client.client import SessionClient
from sessionflow.client.session import Session
from sessionflow.config import DEFAULT_IDLE_TTL_SECONDS, ConfigError, Settings
from sessionflow.contract import SessionInput, SessionLimits, TurnStatus
from sessionflow.errors import SessionNotFound
from sessionflow.storage import FileStorageDriver
from sessionflow.storage.namespaces import session_namespace
from tests.agents import SLOW_SCRIPT, TOOL_SCRIPT, slow_agent, tool_agent
from tests.conftest import Gateway, StartWorker

# Every message is committed to the payload store at once, so the store holds segments.
LIMITS = SessionLimits(commit_transcript_after_bytes=1)
PATIENCE = 60.0


def store_root(temporal: Client) -> Path:
    storage = temporal.data_converter.external_storage
    assert storage is not None
    [driver] = storage.drivers
    assert isinstance(driver, FileStorageDriver)
    return driver.root


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def redis_keys_naming(redis: Redis, workflow_id: str) -> list[str]:
    """Every key in Redis that names the session (a scan of every key)."""
    keys = [k.decode() if isinstance(k, bytes) else str(k) async for k in redis.scan_iter()]
    return [k for k in keys if workflow_id in k]


async def runs_of(temporal: Client, workflow_id: str) -> list[str]:
    return [w.run_id async for w in temporal.list_workflows(f'WorkflowId = "{workflow_id}"')]


async def answer(session: Session, text: str) -> str:
    result = await session.send(text)
    outcome = await asyncio.wait_for(result.outcome, PATIENCE)
    assert outcome.status is TurnStatus.FINISHED, outcome
    return result.assistant_message_id


async def stream_from_the_start(session: Session) -> list[str]:
    """The message ids of every chunk of the stream, read from 0-0 to the first end."""
    events = session.stream(after="0-0")
    return [e.message_id async for e in events]


async def assert_nothing_remains(
    client: SessionClient,
    redis: Redis,
    session: Session,
    before: set[Path],
    sandboxes: Path,
    *,
    runs: list[str] | None = None,
) -> None:
    """Nothing of the session in Redis, the payload store, the sandbox root or Temporal.
    With `runs`, visibility too: it forgets deleted runs about half a minute after
    they are gone (the dev server), so one test waits for that."""
    assert await redis_keys_naming(redis, session.workflow_id) == []
    root = store_root(client.temporal)
    assert not (root / "sessions" / session_namespace(session.workflow_id)).exists()
    assert files_under(root) <= before, "payload store files of the session remain"
    for run_id in runs or [""]:
        handle = client.temporal.get_workflow_handle(session.workflow_id, run_id=run_id or None)
        with pytest.raises(RPCError) as gone:
            await handle.describe()
        assert gone.value.status is RPCStatusCode.NOT_FOUND
        with pytest.raises(RPCError):
            await handle.fetch_history()
    if runs is not None:
        async with asyncio.timeout(90):
            while await runs_of(client.temporal, session.workflow_id):
                await asyncio.sleep(1)
    left = [p for p in sandboxes.rglob("*") if p.is_file() or p.name.startswith("sbx-")]
    assert left == [], "a sandbox remains"
    with pytest.raises(SessionNotFound):
        await session.history()
    with pytest.raises(SessionNotFound):
        await session.info()


async def test_after_close_a_new_session_under_the_same_id_replays_nothing(
    start_worker: StartWorker, redis: Redis, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    await answer(session, "make a file")
    assert await redis_keys_naming(redis, session.workflow_id)

    await session.close()
    assert await redis_keys_naming(redis, session.workflow_id) == []

    again = client.agent("tooling").session(unique_id)
    fresh = await answer(again, "hello again")
    assert set(await stream_from_the_start(again)) == {fresh}
    assert len(await again.history()) == 2


async def test_a_reader_following_a_session_stops_when_it_closes(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    await answer(session, "make a file")
    first = await anext(aiter(session.stream(after="0-0")))

    seen: list[str] = []

    async def follow() -> None:
        async for event in session.stream(after=first.id, follow=True):
            seen.append(event.type)

    reading = asyncio.create_task(follow())
    await asyncio.sleep(0.5)  # the reader has caught up and waits for more
    await session.close()
    await asyncio.wait_for(reading, 10)
    assert seen[-1] == SESSION_END_TYPE
    assert "finish" in seen

    # A reader arriving after the stream is gone, with a cursor from it, stops too.
    late = [e async for e in session.stream(after=first.id, follow=True)]
    assert late == []


async def test_delete_erases_a_session_everywhere_and_its_id_starts_clean(
    start_worker: StartWorker, redis: Redis, sandbox_root: Path, unique_id: str
) -> None:
    client = await start_worker([tool_agent], limits=LIMITS)
    root = store_root(client.temporal)
    before = files_under(root)
    session = client.agent("tooling").session(unique_id)
    await answer(session, "make a file")
    await answer(session, "and again")
    # It was stored everywhere: Redis, the payload store, Temporal, a sandbox.
    assert await redis_keys_naming(redis, session.workflow_id)
    assert files_under(root / "sessions" / session_namespace(session.workflow_id))
    runs = await runs_of(client.temporal, session.workflow_id)
    assert runs
    assert list(sandbox_root.glob("sbx-*"))

    await session.delete()

    await assert_nothing_remains(client, redis, session, before, sandbox_root, runs=runs)
    again = client.agent("tooling").session(unique_id)
    fresh = await answer(again, "hello again")
    assert set(await stream_from_the_start(again)) == {fresh}
    user, _ = await again.history()
    assert user.text() == "hello again"


async def test_delete_stops_a_running_turn(
    start_worker: StartWorker, redis: Redis, sandbox_root: Path, unique_id: str
) -> None:
    client = await start_worker([slow_agent], limits=LIMITS, scripts=[SLOW_SCRIPT])
    before = files_under(store_root(client.temporal))
    session = client.agent("slow").session(unique_id)
    result = await session.send("take your time")
    await session.send("and then this")  # queued behind it: dropped
    async for event in result.stream():
        if event.type == "tool-output-available":
            break  # the sandbox exists, the turn goes on

    await asyncio.wait_for(session.delete(), PATIENCE)

    await assert_nothing_remains(client, redis, session, before, sandbox_root)


async def test_delete_of_a_closed_session(
    start_worker: StartWorker, redis: Redis, sandbox_root: Path, unique_id: str
) -> None:
    client = await start_worker([tool_agent], limits=LIMITS)
    before = files_under(store_root(client.temporal))
    session = client.agent("tooling").session(unique_id)
    await answer(session, "make a file")
    await session.close()

    await session.delete()

    await assert_nothing_remains(client, redis, session, before, sandbox_root)


async def test_delete_of_a_terminated_session_kills_its_sandbox(
    start_worker: StartWorker, redis: Redis, sandbox_root: Path, unique_id: str
) -> None:
    client = await start_worker([tool_agent], limits=LIMITS)
    before = files_under(store_root(client.temporal))
    session = client.agent("tooling").session(unique_id)
    await answer(session, "make a file")
    assert list(sandbox_root.glob("sbx-*"))
    await client.temporal.get_workflow_handle(session.workflow_id).terminate("by an operator")

    await session.delete()

    await assert_nothing_remains(client, redis, session, before, sandbox_root)


async def test_delete_of_an_unknown_session_is_not_found(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    with pytest.raises(SessionNotFound):
        await client.agent("tooling").session(unique_id).delete()


async def test_the_gateway_deletes_a_tenants_session(gateway: Gateway, unique_id: str) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=PATIENCE) as http:
        sent = await http.post(
            f"/v1/sessions/{unique_id}/messages",
            json={"message": "hello"},
            headers=gateway.headers("acme"),
        )
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["assistantMessageId"]
        done = await http.get(
            f"/v1/sessions/{unique_id}/messages/{message_id}/outcome?wait=30",
            headers=gateway.headers("acme"),
        )
        assert done.json()["done"] is True

        # Another tenant's key names another session: nothing to delete.
        other = await http.delete(f"/v1/sessions/{unique_id}", headers=gateway.headers("globex"))
        assert other.status_code == 404

        deleted = await http.delete(f"/v1/sessions/{unique_id}", headers=gateway.headers("acme"))
        assert deleted.status_code == 204, deleted.text
        gone = await http.get(f"/v1/sessions/{unique_id}", headers=gateway.headers("acme"))
        assert gone.status_code == 404
        again = await http.delete(f"/v1/sessions/{unique_id}", headers=gateway.headers("acme"))
        assert again.status_code == 404


async def first_input(temporal: Client, workflow_id: str) -> SessionInput:
    handle = temporal.get_workflow_handle(workflow_id)
    started = await anext(aiter(handle.fetch_history_events()))
    [found] = await temporal.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads, [SessionInput]
    )
    assert isinstance(found, SessionInput)
    return found


async def test_the_agents_idle_ttl_else_the_clients_default_is_set_at_start(
    start_worker: StartWorker, unique_id: str
) -> None:
    brief = agent("brief", model=TOOL_SCRIPT, tools=[bash_tool()], idle_ttl=timedelta(hours=2))
    forever = agent("forever", model=TOOL_SCRIPT, tools=[bash_tool()], idle_ttl=None)
    client = await start_worker([tool_agent, brief, forever])
    # The client knows an agent it is given (here, as the handle's agent).
    for named, expected in (
        (brief, 7200.0),
        (forever, None),
        (tool_agent, float(DEFAULT_IDLE_TTL_SECONDS)),
    ):
        session = client.agent(named).session(unique_id)
        await session.send("hello")
        found = await first_input(client.temporal, session.workflow_id)
        assert found.limits.close_after_idle_seconds == expected, named.name


def test_the_idle_ttl_setting_takes_seconds_or_off() -> None:
    assert Settings.from_env({}).idle_ttl_seconds == 7 * 24 * 3600
    assert Settings.from_env({"SESSIONFLOW_IDLE_TTL": "3600"}).idle_ttl_seconds == 3600
    for never in ("off", "0", "OFF"):
        assert Settings.from_env({"SESSIONFLOW_IDLE_TTL": never}).idle_ttl_seconds is None
    with pytest.raises(ConfigError, match="SESSIONFLOW_IDLE_TTL"):
        Settings.from_env({"SESSIONFLOW_IDLE_TTL": "a week"})
    with pytest.raises(ValueError, match="idle_ttl"):
        agent("bad", model=TOOL_SCRIPT, idle_ttl=-1)
    assert agent("zero", model=TOOL_SCRIPT, idle_ttl=0).idle_ttl is None
