"""Recorded histories replay against the current workflow code.

A change to `workflows/` that would make running sessions non-deterministic fails
here. The histories are recorded by `python -m tests.histories.record`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    assert len(history.events) > 10
    replayer = Replayer(
        workflows=[SessionWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=_WORKFLOW_RUNNER,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


def test_every_representative_session_has_a_history() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "tools", "approval", "interrupt", "continue-as-new-run1", "continue-as-new-run2",
        "transcript",
    }  # fmt: skip
