"""What a turn asks of the Temporal server (issue 16): a session upserts search
attributes at turn boundaries and approvals only, records no patch markers (sessions
are pinned to their build instead), and keeps one idle-sandbox timer per idle period
instead of starting and cancelling one every turn. Its own history replays.

Runs `SessionWorkflow` on the time-skipping test server with scripted activities, as
`tests/test_workflow_logic.py` does (the harness: `tests/workflow_harness.py`).
"""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sessionflow.contract import ActivityName, RunToolResult, SessionLimits, TurnStatus
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow
from tests.workflow_fakes import bash, text_step, tool_step
from tests.workflow_harness import Harness, Session, activity_completed, eventually

_E = EventType


def statuses(events: list[HistoryEvent]) -> list[str]:
    """The SessionStatus of each search attribute upsert that set one, in order."""
    found = []
    for e in events:
        if e.event_type == _E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            status = fields.indexed_fields.get("SessionStatus")
            if status is not None:
                found.append(json.loads(status.data))
    return found


def count(events: list[HistoryEvent], kind: EventType.ValueType) -> int:
    return sum(e.event_type == kind for e in events)


async def replays(session: Session) -> None:
    history = WorkflowHistory(session.workflow_id, await session.history())
    replayer = Replayer(
        workflows=[SessionWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=_WORKFLOW_RUNNER,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_tools_starting_and_ending_do_not_write_search_attributes(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("ls"), bash("pwd", "call-2")), text_step("Done.")]
    fakes.tool_answers = [RunToolResult(output={"stdout": "a"}), RunToolResult(output={})]

    session, reply_id = await harness.start("two commands")
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED

    events = await session.history()
    # No patch markers: no `workflow.patched` branches, so no marker and no
    # `TemporalChangeVersion` upsert (a visibility write) per run.
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in events
        if e.event_type == _E.EVENT_TYPE_MARKER_RECORDED
    ]
    assert "core_patch" not in markers
    # The turn's start and its end; not `idle` first (a message was waiting), and
    # not `running-tool` / `streaming` around each of the two tools.
    assert statuses(events) == ["streaming", "idle"]
    assert count(events, _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 5  # sandbox, 2 tools
    await replays(session)


async def test_one_idle_timer_outlives_the_turns_in_between(
    harness: Harness,
) -> None:
    fakes, server = harness.fakes, harness.env
    fakes.steps = [tool_step(bash("touch x")), text_step("Made."), text_step("Still here.")]
    limits = SessionLimits(pause_sandbox_after_seconds=60)

    session, first = await harness.start("make a file", limits=limits)
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    await eventually(session.history, lambda h: count(h, _E.EVENT_TYPE_TIMER_STARTED) == 1, "")
    await server.sleep(40)
    # A message 40 s into the idle period: the timer is left running, not cancelled.
    second = await session.send("again")
    assert (await session.wait(second)).status is TurnStatus.FINISHED
    events = await session.history()
    assert count(events, _E.EVENT_TYPE_TIMER_STARTED) == 1
    assert count(events, _E.EVENT_TYPE_TIMER_CANCELED) == 0

    # It fires 60 s after the first idle period began, 20 s into the second: too early
    # to pause, so it is set again for the 40 s left.
    await server.sleep(25)
    await eventually(session.history, lambda h: count(h, _E.EVENT_TYPE_TIMER_STARTED) == 2, "")
    assert fakes.paused == []
    await server.sleep(40)
    await fakes.until(lambda: bool(fakes.paused), "the sandbox to be paused")
    assert fakes.paused == ["sb-1"]
    await eventually(session.history, activity_completed(ActivityName.SANDBOX_PAUSE), "pause")
    await replays(session)
