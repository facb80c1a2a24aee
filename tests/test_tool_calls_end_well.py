"""Tool calls on the paths around the happy one: interrupted, retried, timed out.

Each ends with an outcome in history that says what happened (the partial output of an
interrupted command; "outcome unknown" for a call that may or may not have acted), and
the turn goes on or ends as it should, never failing for the call's sake.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.contract import ActivitySettings, SessionLimits, SessionUpdate, TurnStatus
from sessionflow.errors import ConnectionFailed
from sessionflow.messages import ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.conftest import StartWorker


class NoInput(BaseModel):
    pass


def calling(tool_name: str, **args: object) -> Script:
    return Script(
        name=f"calls-{uuid.uuid4().hex[:6]}",
        delay=0,
        turns=[
            [
                ScriptStep(tool_calls=[ScriptedToolCall(tool=tool_name, input=args)]),
                ScriptStep(text="{last_tool_output}"),
            ]
        ],
    )


async def test_an_interrupted_command_keeps_its_output_so_far_in_history(
    start_worker: StartWorker, unique_id: str
) -> None:
    script = calling("Bash", command="echo started-work; sleep 30; echo never")
    slow = agent(script.name, model=script, tools=[bash_tool()])
    client = await start_worker([slow])
    session = client.agent(slow.name).session(unique_id)
    result = await session.send("work")
    async for event in result.stream():
        output = getattr(event.chunk, "output", None)
        if event.type == "tool-output-available" and "started-work" in str(output):
            await session.interrupt()
    assert (await result.outcome).status is TurnStatus.INTERRUPTED
    (part,) = (await session.history())[-1].tool_parts()
    assert part.state is ToolState.OUTPUT_ERROR and part.error_text is not None
    assert part.error_text.startswith("interrupted by the user; its output until then:")
    assert "started-work" in part.error_text and "never" not in part.error_text


async def test_a_retried_call_sees_the_same_idempotency_key_and_another_call_another(
    start_worker: StartWorker, unique_id: str
) -> None:
    keys: list[str] = []

    async def charge(_: NoInput, ctx: ToolContext) -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            raise ConnectionFailed("the payment API hung up")  # retried by Temporal
        return "charged"

    fast_retry = ActivitySettings(initial_retry_interval=timedelta(milliseconds=100))
    script = calling("charge")
    payer = agent(
        script.name,
        model=script,
        tools=[tool("charge", "Charge", input_schema=NoInput, execute=charge)],
        tool_activity=fast_retry,
    )
    client = await start_worker([payer])
    session = client.agent(payer.name).session(unique_id)
    assert (await (await session.send("pay")).outcome).status is TurnStatus.FINISHED
    assert (await (await session.send("pay again")).outcome).status is TurnStatus.FINISHED
    first, retry, second = keys
    assert first == retry, "every attempt of one call has one key"
    assert first != second and first.startswith("sf-")


async def test_a_call_whose_every_attempt_times_out_is_an_unknown_outcome_not_a_failed_turn(
    start_worker: StartWorker, unique_id: str
) -> None:
    async def hang(_: NoInput, ctx: ToolContext) -> str:
        await asyncio.sleep(30)
        return "late"

    script = calling("hang")
    hanging = agent(
        script.name,
        model=script,
        tools=[
            tool(
                "hang",
                "Hangs",
                input_schema=NoInput,
                execute=hang,
                activity=ActivitySettings(start_to_close=timedelta(seconds=1), max_attempts=1),
            )
        ],
    )
    client = await start_worker([hanging])
    session = client.agent(hanging.name).session(unique_id)
    result = await session.send("go")
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    (part,) = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_ERROR and part.error_text is not None
    assert part.error_text.startswith("outcome unknown") and "timed out" in part.error_text
    assert reply.text().startswith("outcome unknown"), "the model read it and answered"


async def test_a_step_too_large_to_record_streams_its_error_and_never_a_finish(
    start_worker: StartWorker, unique_id: str
) -> None:
    """A reader stops at `finish`: a step that cannot be recorded must not send one
    before the turn's error, or the failed turn looks like an answer."""
    huge = Script(
        name=f"huge-{uuid.uuid4().hex[:6]}",
        delay=0,
        chunk_size=256 * 1024,
        turns=[[ScriptStep(text="x" * (2 * 1024 * 1024))], [ScriptStep(text="small again")]],
    )
    talker = agent(huge.name, model=huge)
    client = await start_worker([talker])
    session = client.agent(talker.name).session(unique_id)
    result = await session.send("say a lot")
    kinds = [event.type async for event in result.stream()]
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED and outcome.error_type == "PayloadTooLarge"
    assert "finish" not in kinds and kinds[-1] == "error", kinds[-5:]
    again = await session.send("and now?")
    assert (await again.outcome).status is TurnStatus.FINISHED


def test_a_turn_has_at_least_one_step() -> None:
    """`max_steps_per_turn=0` was accepted, then failed every workflow task."""
    for bad in (0, -1):
        with pytest.raises(ValidationError, match="greater than or equal to 1"):
            SessionLimits(max_steps_per_turn=bad)
        with pytest.raises(ValidationError, match="greater than or equal to 1"):
            SessionUpdate(max_steps_per_turn=bad)
    assert SessionLimits(max_steps_per_turn=1).max_steps_per_turn == 1
