"""The local sandbox as the Bash tool sees it: timeouts, process groups, caps, secrets."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.contract import TurnStatus
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.conftest import StartWorker


def running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may be slow to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def one_command(name: str, command: str, timeout: float | None = None) -> object:
    args: dict[str, object] = {"command": command}
    if timeout is not None:
        args["timeout"] = timeout
    return agent(
        name,
        model=Script(
            name=name,
            delay=0,
            turns=[
                [ScriptStep(tool_calls=[ScriptedToolCall(tool="Bash", input=args)]), ScriptStep()]
            ],
        ),
        tools=[bash_tool()],
    )


async def run_command(
    start_worker: StartWorker, session_id: str, command: str, timeout: float | None = None
) -> dict[str, object]:
    client = await start_worker([one_command("cmd", command, timeout)])
    session = client.agent("cmd").session(session_id)
    result = await session.send("run it")
    assert (await result.outcome).status is TurnStatus.FINISHED
    (part,) = (await session.history())[-1].tool_parts()
    assert isinstance(part.output, dict), part.error_text
    return part.output


def host_processes(marker: str) -> list[int]:
    """Live host processes whose command line holds `marker` (pids inside a sandbox are
    its own namespace's, so they are looked for by what they run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and running(int(entry.name)):
                found.append(int(entry.name))
    return found


async def test_timeout_kills_the_whole_process_group(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    output = await run_command(
        start_worker, unique_id, "sleep 30.17 & echo started; sleep 30.18", timeout=1
    )
    assert output["timed_out"] is True
    assert output["exit_code"] == 124
    assert output["stdout"] == "started\n"
    assert int(str(output["duration_ms"])) < 5_000
    # The background child died with the command.
    assert host_processes("sleep 30.1") == []


async def test_output_is_capped_with_a_marker(start_worker: StartWorker, unique_id: str) -> None:
    output = await run_command(start_worker, unique_id, "head -c 200000 /dev/zero | tr '\\0' x")
    stdout = str(output["stdout"])
    assert output["truncated"] is True
    assert stdout.startswith("x" * 1000)
    assert stdout.endswith(f"[output truncated: {200_000 - 64 * 1024} more bytes not shown]")


async def test_commands_do_not_see_the_workers_secrets(
    start_worker: StartWorker, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value")
    monkeypatch.setenv("E2B_API_KEY", "e2b-secret-value")
    output = await run_command(start_worker, unique_id, "env")
    stdout = str(output["stdout"])
    assert "secret-value" not in stdout
    assert "ANTHROPIC_API_KEY" not in stdout
    # The sandbox's own PATH and home: nothing names the host's layout or the sandbox id.
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in stdout
    assert "HOME=/workspace" in stdout.splitlines()
    assert "sbx-" not in stdout


async def test_a_vanished_sandbox_is_recreated_and_the_stream_says_so(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    import shutil

    client = await start_worker([one_command("cmd", "echo hi")])
    session = client.agent("cmd").session(unique_id)
    await (await session.send("first")).done
    lost = await session.sandbox.get_id()
    assert lost is not None
    # Expired, cleaned up, deleted by an operator (its disk unmounted first)...
    if os.path.ismount(sandbox_root / lost):
        await asyncio.to_thread(subprocess.run, ["umount", str(sandbox_root / lost)], check=True)
    shutil.rmtree(sandbox_root / lost)

    result = await session.send("and again")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    statuses = [e.chunk.data for e in events if e.type == "data-status"]  # type: ignore[attr-defined]
    assert {"status": "sandbox-setup", "recreated": lost} in statuses
    fresh = await session.sandbox.get_id()
    assert fresh not in (None, lost)
    assert (sandbox_root / str(fresh)).is_dir()


async def test_with_bubblewrap_only_the_workspace_is_writable(
    start_worker: StartWorker, unique_id: str, sandbox_root: Path
) -> None:
    from sessionflow.sandbox.local import bubblewrap

    assert bubblewrap() is not None, "bubblewrap (bwrap) must work here: apt-get install bubblewrap"
    (sandbox_root / "sbx-someone-else").mkdir(parents=True)
    (sandbox_root / "sbx-someone-else" / "private.txt").write_text("theirs")
    output = await run_command(
        start_worker,
        unique_id,
        "touch /etc/escape 2>/dev/null && echo etc-writable || echo etc-read-only; "
        "touch mine && echo workspace-writable; "
        "cat ../sbx-someone-else/private.txt 2>/dev/null || echo others-hidden; "
        "touch /tmp/scratch && echo tmp-private",
    )
    assert str(output["stdout"]).split() == [
        "etc-read-only", "workspace-writable", "others-hidden", "tmp-private",
    ]  # fmt: skip
    assert not Path("/etc/escape").exists()
    assert not Path("/tmp/scratch").exists()
