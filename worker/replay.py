"""The replay gate: recorded histories replayed against the workflow code at hand.

A history recorded by a build replays on that build by definition; the gate proves
that the code about to be deployed still replays histories of every session shape it
records (`tests/histories/record.py`), so a change that is non-deterministic within
one build (a reordered activity call, a command issued on replay only) fails before
it ships. Sessions already running are pinned to their own build (`versions`) and are
never replayed on the new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow


@dataclass(frozen=True)
class Replayed:
    """One history's replay: `failure` is None when it replayed, else why not."""

    name: str
    events: int
    failure: str | None


def history_files(folder: Path) -> list[Path]:
    """The recorded histories in `folder` (`*.json`), by name."""
    return sorted(folder.glob("*.json"))


async def replay_histories(
    paths: Iterable[Path], workflows: Sequence[type] = (SessionWorkflow,)
) -> list[Replayed]:
    """Replay each history in `paths` against `workflows` (by default the session
    workflow this package ships); a file that is not a history is a failure too."""
    replayer = Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        workflow_runner=_WORKFLOW_RUNNER,
    )
    results = []
    for path in paths:
        try:
            history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
        except Exception as err:  # not JSON, not a history
            results.append(Replayed(path.stem, 0, f"unreadable: {type(err).__name__}: {err}"))
            continue
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        failure = replayed.replay_failure
        results.append(
            Replayed(
                path.stem,
                len(history.events),
                None if failure is None else " ".join(str(failure).split())[:2000],
            )
        )
    return results
