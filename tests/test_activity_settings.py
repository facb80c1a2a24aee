"""Activity settings per agent and per tool, and tools that stop on `ctx.cancelled`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType

from sessionflow import agent, tool
from sessionflow.agents.tools import ToolContext
from sessionflow.contract import ActivityName, ActivitySettings, TurnStatus
from sessionflow.errors import SandboxError
from sessionflow.messages import ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.conftest import StartWorker
from tests.history import workflow_events


class NoInput(BaseModel):
    pass


CALLS: dict[str, int] = {}


async def _flaky(_: NoInput, ctx: ToolContext) -> str:
    """Fails with a retryable error every time, counting its attempts per session."""
    CALLS[ctx.session_id] = CALLS.get(ctx.session_id, 0) + 1
    raise SandboxError("the backend hiccupped")


def _script(name: str, tool_name: str) -> Script:
    return Script(
        name=name,
        turns=[
            [
                ScriptStep(text="Trying.", tool_calls=[ScriptedToolCall(tool=tool_name, input={})]),
                ScriptStep(text="Done."),
            ]
        ],
    )


flaky = tool(
    "flaky",
    "Always fails (retryably)",
    input_schema=NoInput,
    execute=_flaky,
    activity=ActivitySettings(max_attempts=2, initial_retry_interval=timedelta(milliseconds=50)),
)
layered_agent = agent(
    "layered",
    model=_script("layered", "flaky"),
    tools=[flaky],
    model_activity=ActivitySettings(start_to_close=timedelta(seconds=77)),
    tool_activity=ActivitySettings(
        start_to_close=timedelta(seconds=33), max_attempts=9, heartbeat=timedelta(seconds=7)
    ),
)


async def test_tool_settings_override_the_agents_which_override_the_defaults(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([layered_agent])
    session = client.agent("layered").session(unique_id)
    outcome = await (await session.send("go")).outcome

    # The tool's max_attempts (2) beat the agent's (9): the call ran twice, then the
    # turn failed with the tool's error.
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "SandboxError"
    assert CALLS[unique_id] == 2
    events = await workflow_events(client.temporal, session.workflow_id)
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    tool_call = next(a for a in scheduled if a.activity_type.name == ActivityName.RUN_TOOL)
    # The agent's tool settings where the tool sets nothing (start_to_close, heartbeat).
    assert tool_call.start_to_close_timeout.ToTimedelta() == timedelta(seconds=33)
    assert tool_call.heartbeat_timeout.ToTimedelta() == timedelta(seconds=7)
    assert tool_call.retry_policy.maximum_attempts == 2
    # The model step settings reach the workflow with the first step's result.
    model_steps = [a for a in scheduled if a.activity_type.name == ActivityName.MODEL_STEP]
    assert model_steps[0].start_to_close_timeout.ToTimedelta() == timedelta(minutes=10)

    again = await (await session.send("again")).outcome
    assert again.status is TurnStatus.FAILED
    events = await workflow_events(client.temporal, session.workflow_id)
    later_steps = [
        e.activity_task_scheduled_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == ActivityName.MODEL_STEP
    ][1:]
    assert later_steps
    assert all(a.start_to_close_timeout.ToTimedelta() == timedelta(seconds=77) for a in later_steps)


STOPPED: list[str] = []
STARTED: dict[str, asyncio.Event] = {}


async def _patient(_: NoInput, ctx: ToolContext) -> str:
    """Works until told to stop, then cleans up (records that it stopped by itself)."""
    STARTED.setdefault(ctx.session_id, asyncio.Event()).set()
    while not ctx.cancelled.is_set():
        await asyncio.sleep(0.02)
    STOPPED.append(ctx.session_id)
    return "stopped cleanly"


patient_agent = agent(
    "patient",
    model=_script("patient", "patient"),
    tools=[tool("patient", "Works until interrupted", input_schema=NoInput, execute=_patient)],
)


async def test_an_interrupt_sets_cancelled_and_lets_the_tool_stop_by_itself(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([patient_agent])
    session = client.agent("patient").session(unique_id)
    STARTED[unique_id] = asyncio.Event()
    result = await session.send("work")
    await asyncio.wait_for(STARTED[unique_id].wait(), 10)
    await session.interrupt()
    outcome = await result.outcome

    assert outcome.status is TurnStatus.INTERRUPTED
    assert STOPPED.count(unique_id) == 1
    reply = (await session.history())[-1]
    part = reply.tool_parts()[0]
    assert part.state is ToolState.OUTPUT_ERROR
    assert part.error_text == "interrupted by the user"
