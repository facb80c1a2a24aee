"""The replay gate: histories of every session shape replay against the current code.

A change to `workflows/` that is not deterministic fails here: against the histories
recorded in the repository (`python -m tests.histories.record`), and against histories
recorded from real runs of this very code, so histories that nobody re-recorded cannot
hide it. A deliberately reordered activity call fails the gate; `sessionflow
replay-check` runs it from the command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.worker.replay import history_files, replay_histories
from sessionflow.workflows import session as session_module
from sessionflow.workflows.turn import Turn
from tests.agents import approval_agent, counter_agent, streaming_agent, tool_agent
from tests.conftest import StartWorker
from tests.histories.record import SHAPES, record_sessions

FOLDER = Path(__file__).parent / "histories"
HISTORIES = history_files(FOLDER)
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    (result,) = await replay_histories([path])
    assert result.events > 10
    assert result.failure is None, f"{path.name}: {result.failure}"


def test_every_session_shape_has_a_history() -> None:
    assert {p.stem for p in HISTORIES} == set(SHAPES)


class SandboxFirstTurn(Turn):
    """The change behind issue 25: the sandbox ensured before the approval request
    instead of after it (two activity calls in the other order)."""

    async def _ask_approval(self, asked: Any) -> None:
        await self._session.ensure_sandbox(self._session.ref(self.reply.id, self._step))
        await super()._ask_approval(asked)


async def test_a_reordered_activity_call_fails_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    # `sessionflow` passes through the workflow sandbox: the session module replayed is
    # this one, so its turns are the reordered ones.
    monkeypatch.setattr(session_module, "Turn", SandboxFirstTurn)
    approval, tools = await replay_histories([FOLDER / "approval.json", FOLDER / "tools.json"])
    assert approval.failure is not None and "Nondeterminism" in approval.failure
    assert tools.failure is None  # no approval asked: nothing moved
    monkeypatch.undo()
    assert (await replay_histories([FOLDER / "approval.json"]))[0].failure is None


async def test_histories_recorded_now_from_real_runs_replay(
    start_worker: StartWorker,
    temporal: Client,
    redis: Redis,
    task_queue: str,
    unique_id: str,
    tmp_path: Path,
) -> None:
    await start_worker([tool_agent, approval_agent, streaming_agent, counter_agent])
    histories = await record_sessions(temporal, redis, task_queue, prefix=f"{unique_id}-")
    assert set(histories) == set(SHAPES)
    for name, history in histories.items():
        (tmp_path / f"{name}.json").write_text(history)
    results = await replay_histories(history_files(tmp_path))
    assert [(r.name, r.failure) for r in results if r.failure] == []
    assert len(results) == len(SHAPES)


def _replay_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionflow", "replay-check", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_the_replay_check_command_passes_on_the_recorded_histories() -> None:
    ran = _replay_check()
    assert ran.returncode == 0, ran.stderr
    assert f"All {len(SHAPES)} histories replay on build" in ran.stdout
    for shape in SHAPES:
        assert f"{shape} " in ran.stdout


def test_the_replay_check_command_fails_on_what_does_not_replay(tmp_path: Path) -> None:
    (tmp_path / "approval.json").write_text((FOLDER / "approval.json").read_text())
    (tmp_path / "broken.json").write_text('{"events": "no"}')
    ran = _replay_check("--histories", str(tmp_path))
    assert ran.returncode == 1
    assert "approval " in ran.stdout and "broken " in ran.stdout
    assert "1 of 2 histories do not replay on this code (broken)" in ran.stderr
    empty = _replay_check("--histories", str(tmp_path / "nothing"))
    assert empty.returncode == 1
    assert "no recorded histories (*.json) in" in empty.stderr
