"""The E2B backend's own code, end to end through sessions, against a fake `e2b` SDK
(there is no E2B access from here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sessionflow.agents.builtin import builtin_tools
from sessionflow.agents.definition import agent
from sessionflow.client.client import SessionClient
from sessionflow.contract import SessionLimits, TurnStatus
from sessionflow.errors import SandboxNotFound
from sessionflow.messages import ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.sandbox.e2b import E2BSandboxBackend
from tests.conftest import StartWorker
from tests.fake_e2b import FakeE2B


def cloud_agent(*steps: tuple[str, dict[str, object]]) -> object:
    return agent(
        "cloud",
        model=Script(
            name="cloud",
            delay=0,
            turns=[
                [
                    *(ScriptStep(tool_calls=[ScriptedToolCall(tool=t, input=i)]) for t, i in steps),
                    ScriptStep(text="{last_tool_output}"),
                ]
            ],
        ),
        tools=builtin_tools(),
    )


@pytest.fixture
def fake(tmp_path: Path) -> FakeE2B:
    return FakeE2B(tmp_path / "e2b")


async def start(start_worker: StartWorker, fake: FakeE2B, *steps: tuple[str, dict[str, object]],
                key: str = "e2b-test-key", limits: SessionLimits | None = None) -> SessionClient:  # fmt: skip
    backend = E2BSandboxBackend(sdk=fake, api_key=key, template="python-3.12", timeout_seconds=600)
    return await start_worker([cloud_agent(*steps)], sandboxes=backend, limits=limits)


async def test_tools_run_in_an_e2b_sandbox(
    start_worker: StartWorker, fake: FakeE2B, unique_id: str
) -> None:
    client = await start(
        start_worker, fake,
        ("Write", {"path": "hello.py", "content": "print('hi from the VM')\n"}),
        ("List", {"path": "."}),
        ("Bash", {"command": "python3 hello.py; echo err >&2; exit 5"}),
        ("Read", {"path": "../../etc/passwd"}),
    )  # fmt: skip
    session = client.agent("cloud").session(unique_id)
    result = await session.send("go")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    write, listing, bash, escape = (await session.history())[-1].tool_parts()
    assert write.output == {"path": "hello.py", "bytes": 24}
    assert listing.output == "hello.py (24 B)"
    assert (bash.output["stdout"], bash.output["stderr"], bash.output["exit_code"]) == (
        "hi from the VM\n",
        "err\n",
        5,
    )
    assert escape.state is ToolState.OUTPUT_ERROR and "leads outside the workspace" in (
        escape.error_text or ""
    )
    sandbox_id = await session.sandbox.get_id()
    record = fake.sandboxes[sandbox_id]  # type: ignore[index]
    assert (record.template, record.timeout, record.metadata) == (
        "python-3.12",
        600,
        {"created-by": "sessionflow", "sessionflow-owner": "tenant:"},
    )
    assert any(e.type == "tool-output-available" and e.chunk.preliminary for e in events)  # type: ignore[attr-defined]


async def test_bad_credentials_fail_the_turn_without_retries(
    start_worker: StartWorker, fake: FakeE2B, unique_id: str
) -> None:
    client = await start(start_worker, fake, ("Bash", {"command": "true"}), key="wrong")
    outcome = await asyncio.wait_for(
        (await client.agent("cloud").session(unique_id).send("go")).outcome, 20
    )
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "SandboxRefused" and "Invalid API key" in (outcome.error or "")


async def test_a_sandbox_ended_outside_sessionflow_is_recreated(
    start_worker: StartWorker, fake: FakeE2B, unique_id: str
) -> None:
    client = await start(start_worker, fake, ("Bash", {"command": "echo alive"}))
    session = client.agent("cloud").session(unique_id)
    await (await session.send("one")).done
    first = await session.sandbox.get_id()
    fake.kill_externally(first)  # type: ignore[arg-type]
    result = await session.send("two")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    assert {"status": "sandbox-setup", "recreated": first} in [
        e.chunk.data for e in events if e.type == "data-status"
    ]  # type: ignore[attr-defined]
    assert await session.sandbox.get_id() not in (None, first)
    assert (await session.history())[-1].text() == "alive"


async def test_an_interrupt_kills_the_command_in_the_vm(
    start_worker: StartWorker, fake: FakeE2B, unique_id: str
) -> None:
    client = await start(start_worker, fake, ("Bash", {"command": "sleep 1000"}))
    session = client.agent("cloud").session(unique_id)
    result = await session.send("sleep")
    while not any("sleep 1000" in c for r in fake.sandboxes.values() for c in r.commands):
        await asyncio.sleep(0.02)
    await session.interrupt()
    assert (await result.outcome).status is TurnStatus.INTERRUPTED
    (record,) = fake.sandboxes.values()
    assert record.killed_commands == 1


async def test_an_idle_session_pauses_its_sandbox_and_the_next_turn_resumes_it(
    start_worker: StartWorker, fake: FakeE2B, unique_id: str
) -> None:
    client = await start(
        start_worker, fake, ("Bash", {"command": "echo hi"}),
        limits=SessionLimits(pause_sandbox_after_seconds=1),
    )  # fmt: skip
    session = client.agent("cloud").session(unique_id)
    await (await session.send("one")).done
    sandbox_id = await session.sandbox.get_id()
    record = fake.sandboxes[sandbox_id]  # type: ignore[index]
    for _ in range(100):
        if record.state == "paused":
            break
        await asyncio.sleep(0.05)
    assert record.state == "paused"
    assert (await (await session.send("two")).outcome).status is TurnStatus.FINISHED
    assert record.state == "running" and record.resumed >= 1

    await session.close()
    assert sandbox_id not in fake.sandboxes  # closing the session killed its sandbox


async def test_a_missing_path_is_a_file_error_not_a_vanished_sandbox(tmp_path: Path) -> None:
    fake = FakeE2B(tmp_path)
    backend = E2BSandboxBackend(sdk=fake, api_key=fake.valid_key)
    sandbox = await backend.create(owner="tenant:")
    for attempt in (
        sandbox.read_file("missing.txt"),
        sandbox.list_files("no-such-dir", 1),
    ):
        with pytest.raises(FileNotFoundError, match="in the workspace"):
            await attempt
    # The sandbox itself is still there: only a vanished sandbox is SandboxNotFound.
    assert (await backend.connect(sandbox.id)).id == sandbox.id
    fake.kill_externally(sandbox.id)
    with pytest.raises(SandboxNotFound):
        await sandbox.read_file("missing.txt")
