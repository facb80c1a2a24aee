"""A session with no wall: 300 tool calls and 50 MB of transcript (issue 14).

Before the transcript store every step's input carried the whole transcript: history
grew with its square and the session wedged on Temporal's 2 MB payload limit.
"""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from bench.long_agent import FillerProvider, expected_output, long_agent
from sessionflow.connections import data_converter
from sessionflow.contract import TurnStatus
from sessionflow.messages import Role, ToolPart
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow
from tests.conftest import StartWorker

pytestmark = pytest.mark.slow

KIB = 1024
TURNS, CALLS, SIZE = 30, 10, 170_000  # 300 tool calls, 51 MB of output


async def runs_of(temporal: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of the workflow (continue-as-new makes several), oldest first."""
    histories = []
    async for found in temporal.list_workflows(f'WorkflowId = "{workflow_id}"'):
        handle = temporal.get_workflow_handle(workflow_id, run_id=found.run_id)
        histories.append(await handle.fetch_history())
    return sorted(histories, key=lambda h: h.events[0].event_time.ToNanoseconds())


async def test_a_50_mb_session_of_300_tool_calls_finishes_and_keeps_working(
    start_worker: StartWorker, temporal: Client, unique_id: str
) -> None:
    client = await start_worker([long_agent()], providers=[FillerProvider()])
    session = client.agent("long").session(unique_id)
    for turn in range(1, TURNS + 1):
        outcome = await (await session.send(f"calls={CALLS} size={SIZE}")).outcome
        assert outcome.status is TurnStatus.FINISHED, (turn, outcome)

    # It continued as new along the way, and every run replays.
    histories = await runs_of(temporal, session.workflow_id)
    assert len(histories) >= 3, len(histories)
    replayer = Replayer(
        workflows=[SessionWorkflow],
        data_converter=data_converter(temporal.data_converter.external_storage),
        workflow_runner=_WORKFLOW_RUNNER,
    )
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure

    # What a step adds to history does not grow with the transcript: the last turn's
    # inputs are as small as the first's, and no event carries more than one output.
    assert sum(
        e.HasField("activity_task_scheduled_event_attributes") for h in histories for e in h.events
    ) >= TURNS * (CALLS + 2)
    for history in histories:
        inputs = [
            e.activity_task_scheduled_event_attributes.input.ByteSize()
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert max(inputs, default=0) < 64 * KIB, max(inputs)
        assert max(e.ByteSize() for e in history.events) < SIZE + 16 * KIB
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.input.ByteSize() < 64 * KIB  # the carried-over transcript too

    # history() pages through all of it.
    pages, offset = [], 0
    while page := await session.history(offset=offset, limit=7):
        pages.extend(page)
        offset += len(page)
    assert [m.role for m in pages] == [Role.USER, Role.ASSISTANT] * TURNS
    outputs = [p for m in pages for p in m.parts if isinstance(p, ToolPart)]
    assert len(outputs) == TURNS * CALLS
    assert sum(len(p.output) for p in outputs) >= 50_000_000
    for part in (outputs[0], outputs[157], outputs[-1]):
        assert part.output == expected_output(part.input["turn"], part.input["n"], SIZE)
    assert pages[-1].text() == f"Done: {2 * TURNS} messages."

    # And the session keeps working.
    last = await (await session.send(f"calls=1 size={SIZE}")).outcome
    assert last.status is TurnStatus.FINISHED
    assert (await session.info()).message_count == 2 * TURNS + 2
    [answer] = await session.history(offset=2 * TURNS + 1)
    assert answer.text() == f"Done: {2 * TURNS + 2} messages."
