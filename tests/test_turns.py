"""A session's turns end to end: workflow, activities, stream and history."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from sessionflow.client.session import SendResult
from sessionflow.contract import TurnStatus
from sessionflow.messages import MessageStatus, Role, StepStartPart, TextPart, ToolPart, ToolState
from sessionflow.streams.reader import StreamEvent
from tests.agents import tool_agent
from tests.conftest import StartWorker

DELTAS = {"text-delta", "reasoning-delta", "tool-input-delta"}


async def collect(result: SendResult) -> list[StreamEvent]:
    return [event async for event in result.stream()]


def shape(events: list[StreamEvent]) -> list[str]:
    """Chunk types with runs of deltas collapsed, so the test reads as a grammar."""
    types: list[str] = []
    for event in events:
        if event.type in DELTAS and types and types[-1] == event.type:
            continue
        if getattr(event.chunk, "preliminary", None):
            continue  # progress of a running command, as often as it prints
        types.append(event.type)
    return types


async def test_turn_with_tool_calls_streams_in_order_and_records_history(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)

    result = await session.send("make a file and read it")
    events = await collect(result)
    outcome = await result.outcome

    assert outcome.status is TurnStatus.FINISHED
    assert shape(events) == [
        "start",
        "start-step", "data-status", "text-start", "text-delta", "text-end",
        "tool-input-start", "tool-input-delta", "tool-input-available", "finish-step",
        "data-status",  # the sandbox is created before the first tool runs
        "data-status", "tool-output-available",
        "start-step", "data-status", "text-start", "text-delta", "text-end",
        "tool-input-start", "tool-input-delta", "tool-input-available", "finish-step",
        "data-status", "tool-output-available",
        "start-step", "data-status", "text-start", "text-delta", "text-end", "finish-step",
        "data-status", "finish",
    ]  # fmt: skip
    statuses = [e.chunk.data["status"] for e in events if e.type == "data-status"]  # type: ignore[attr-defined]
    assert statuses == [
        "thinking", "sandbox-setup", "running-tool",
        "thinking", "running-tool",
        "thinking", "idle",
    ]  # fmt: skip
    assert events[0].chunk.to_wire() == {"type": "start", "messageId": result.assistant_message_id}
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert {e.message_id for e in events} == {result.assistant_message_id}

    history = await session.history()
    assert [m.role for m in history] == [Role.USER, Role.ASSISTANT]
    user, reply = history
    assert user.text() == "make a file and read it"
    assert reply.id == result.assistant_message_id
    assert reply.status is MessageStatus.COMPLETE
    assert sum(isinstance(p, StepStartPart) for p in reply.parts) == 3
    tools = reply.tool_parts()
    assert [t.input["command"] for t in tools] == ["echo hello > a.txt; ls", "cat a.txt"]
    assert all(t.state is ToolState.OUTPUT_AVAILABLE for t in tools)
    assert tools[0].output["stdout"] == "a.txt\n"
    assert tools[1].output == {**tools[1].output, "exit_code": 0, "stdout": "hello\n"}
    assert reply.parts[-1] == TextPart(text="The file says: hello.")

    # What a reader reassembles is what history recorded.
    streamed_text = "".join(e.chunk.delta for e in events if e.type == "text-delta")  # type: ignore[attr-defined]
    assert streamed_text == reply.text()
    outputs = [
        e.chunk.output  # type: ignore[attr-defined]
        for e in events
        if e.type == "tool-output-available" and not e.chunk.preliminary  # type: ignore[attr-defined]
    ]
    assert outputs == [t.output for t in tools]


async def test_second_message_sees_the_first_turn(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    first = await session.send("make a file and read it")
    assert (await first.outcome).status is TurnStatus.FINISHED

    second = await session.send("and now?")
    assert (await second.outcome).status is TurnStatus.FINISHED

    history = await session.history()
    assert len(history) == 4
    # The model step of turn 2 saw both user messages and the first answer (3 messages
    # before its own reply started).
    assert history[-1].text() == "Turn 2: you said and now?; I see 4 messages."
    info = await session.info()
    assert info.message_count == 4 and not info.busy and info.queued == 0
    assert info.usage.output_tokens > 0 and info.usage.input_tokens > 0
    assert info.sandbox_id is not None


async def test_each_step_is_one_activity_in_workflow_history(
    start_worker: StartWorker, unique_id: str, temporal: object
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    result = await session.send("make a file and read it")
    await result.done

    history = await client.temporal.get_workflow_handle(session.workflow_id).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == [
        "sessionflow.model_step",
        "sessionflow.ensure_sandbox",
        "sessionflow.run_tool",
        "sessionflow.model_step",
        "sessionflow.run_tool",
        "sessionflow.model_step",
    ]
    # Tokens stream through Redis, not history: a few dozen events for a whole turn.
    assert len(history.events) < 60


async def test_tool_parts_carry_non_zero_exit_codes_as_results(
    start_worker: StartWorker, unique_id: str
) -> None:
    from sessionflow.agents.builtin import bash_tool
    from sessionflow.agents.definition import agent
    from sessionflow.providers.scripted import Script, ScriptStep
    from tests.agents import bash

    failing = agent(
        "failing",
        model=Script(
            name="failing",
            delay=0,
            turns=[[ScriptStep(tool_calls=[bash("echo oops >&2; exit 3")]), ScriptStep(text="ok")]],
        ),
        tools=[bash_tool()],
    )
    client = await start_worker([failing])
    session = client.agent("failing").session(unique_id)
    result = await session.send("fail please")
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    (part,) = reply.tool_parts()
    assert isinstance(part, ToolPart)
    assert part.state is ToolState.OUTPUT_AVAILABLE
    assert part.output["exit_code"] == 3 and part.output["stderr"] == "oops\n"
