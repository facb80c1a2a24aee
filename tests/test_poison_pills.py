"""Nothing a user, model or tool produces wedges a session: oversized output is capped,
what retrying cannot fix fails at once, and a session whose workflow task keeps
failing is reported as such, naming the cause."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.worker import Worker

from sessionflow import agent, tool
from sessionflow.agents.tools import ToolContext
from sessionflow.client.client import SessionClient
from sessionflow.contract import WORKFLOW_NAME, SendRequest, SessionInput, TurnStatus
from sessionflow.errors import InvalidInput, SessionStuck
from sessionflow.messages import ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.agents import context_agent
from tests.conftest import StartWorker
from tests.history import activity_attempts, scheduled_activities, workflow_events


class NoInput(BaseModel):
    pass


RUNS: dict[str, int] = {}


async def _explode(_: NoInput, ctx: ToolContext) -> str:
    RUNS[ctx.session_id] = RUNS.get(ctx.session_id, 0) + 1
    raise RuntimeError("x" * 3_000_000)


async def _hoard(_: NoInput, ctx: ToolContext) -> str:
    ctx.state["blob"] = "y" * 1_000_000
    return "saved a megabyte in state"


def _one_call(name: str, tool_name: str) -> Script:
    return Script(
        name=name,
        delay=0,
        chunk_size=4096,
        turns=[
            [
                ScriptStep(
                    text="Calling.", tool_calls=[ScriptedToolCall(tool=tool_name, input={})]
                ),
                ScriptStep(text="After the call: {last_tool_output}"),
            ]
        ],
    )


exploding_agent = agent(
    "exploding",
    model=_one_call("exploding", "explode"),
    tools=[tool("explode", "Raises a 3 MB error", input_schema=NoInput, execute=_explode)],
)
hoarding_agent = agent(
    "hoarding",
    model=_one_call("hoarding", "hoard"),
    tools=[tool("hoard", "Puts 1 MB in state", input_schema=NoInput, execute=_hoard)],
)


def _broken_system(ctx: Any) -> str:
    raise KeyError("tenant_name")


broken_option_agent = agent(
    "broken-option",
    model=Script(name="broken-option", turns=[[ScriptStep(text="never")]]),
    system=_broken_system,
)


async def test_a_3_mb_tool_error_runs_the_tool_once_and_fails_only_that_call(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([exploding_agent])
    session = client.agent("exploding").session(unique_id)
    outcome = await (await session.send("go")).outcome

    assert outcome.status is TurnStatus.FINISHED
    assert RUNS[unique_id] == 1
    reply = (await session.history())[-1]
    [part] = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_ERROR
    assert part.error_text is not None and "characters cut" in part.error_text
    assert len(part.error_text) < 20_000
    assert reply.text().startswith("Calling.After the call:")
    # The session keeps working.
    assert (await (await session.send("again")).outcome).status is TurnStatus.FINISHED


async def test_state_too_large_to_save_fails_only_that_call(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([hoarding_agent])
    session = client.agent("hoarding").session(unique_id)
    assert (await (await session.send("go")).outcome).status is TurnStatus.FINISHED
    [part] = (await session.history())[-1].tool_parts()
    assert part.state is ToolState.OUTPUT_ERROR
    assert "change was not saved" in (part.error_text or "")
    assert await session.state() in (None, {})


async def test_a_send_without_required_context_fails_at_once(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([context_agent])
    # A client that knows the agent refuses before anything starts...
    knowing = client.agent(context_agent).session(unique_id)
    with pytest.raises(InvalidInput, match="this agent needs context"):
        await knowing.send("who am I?")
    assert not await knowing.exists()

    # ...and one that knows only its name gets a turn that fails on the first attempt,
    # not after minutes of retries.
    blind = client.agent("contextual").session(unique_id)
    outcome = await asyncio.wait_for((await blind.send("who am I?")).outcome, 30)
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidInput"
    assert "requires one" in (outcome.error or "")
    events = await workflow_events(client.temporal, blind.workflow_id)
    assert scheduled_activities(events).count("sessionflow.model_step") == 1
    assert max(activity_attempts(events)) == 1


async def test_an_option_that_raises_fails_the_turn_at_once_naming_it(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([broken_option_agent])
    session = client.agent("broken-option").session(unique_id)
    outcome = await (await session.send("hi")).outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "AgentOptionFailed"
    assert "system raised KeyError" in (outcome.error or "")
    events = await workflow_events(client.temporal, session.workflow_id)
    assert max(activity_attempts(events)) == 1


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class BrokenSessionWorkflow:
    """Stands in for a workflow whose task can never complete (a bug, a payload Temporal
    refuses): every attempt raises."""

    @workflow.run
    async def run(self, input: SessionInput) -> None:
        raise RuntimeError("deliberately broken workflow code")

    @workflow.signal(name="send")
    def send(self, request: SendRequest) -> None: ...


async def test_a_failing_workflow_task_is_reported_as_stuck_naming_the_cause(
    temporal: Any, redis: Any, task_queue: str, unique_id: str
) -> None:
    # Sessions of agent "any" run on its own task queue (see sessionflow.worker.build).
    queue = f"{task_queue}.any"
    async with Worker(temporal, task_queue=queue, workflows=[BrokenSessionWorkflow]):
        client = SessionClient(temporal, redis, task_queue=task_queue)
        session = client.agent("any").session(unique_id)
        result = await session.send("hi")
        # Wait until Temporal has retried the task (attempt 2 and up).
        for _ in range(200):
            description = await temporal.get_workflow_handle(session.workflow_id).describe()
            if description.raw_description.pending_workflow_task.attempt >= 2:
                break
            await asyncio.sleep(0.1)
        for call in (session.info, session.history):
            with pytest.raises(SessionStuck, match="deliberately broken workflow code"):
                await call()
        with pytest.raises(SessionStuck, match="cannot make progress"):
            await asyncio.wait_for(result.outcome, 60)
