"""Upgrade on continue-as-new (issue 25): long idle sessions may move to new code.

A session whose agent sets `upgrade_on_new_build` idles on build A; build B, whose
workflow code would not replay A's history (it ensures the sandbox after each turn),
becomes current; the session's next message continues it as new on B, which answers
it with the whole conversation. A session without the option answers on A. Workers are
in-process, against the real dev server, in a deployment of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType, RoutingConfigUpdateState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior

from sessionflow.agents.definition import agent
from sessionflow.client.client import SessionClient
from sessionflow.client.session import Session
from sessionflow.config import ConfigError, Settings
from sessionflow.contract import ActivityName, SessionInput, SessionLimits, TurnStatus
from sessionflow.providers.scripted import Script, ScriptStep
from sessionflow.worker import versions
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.conftest import StartWorker
from tests.other_builds import build_running, replay_failure, scheduled, task_failures
from tests.upgrade_variants import SandboxAfterSession

ECHO = Script(
    name="upgrade-echo",
    delay=0.0,
    turns=[[ScriptStep(text="Turn {turn}: you said {last_user_text}; I see {message_count}.")]],
)
upgrading_agent = agent("upgrading", model=ECHO, upgrade_on_new_build=True)
pinned_agent = agent("pinned", model=ECHO)


async def build_of(temporal: Client, workflow_id: str) -> str:
    """The build the session's newest run is pinned to."""
    described = await temporal.get_workflow_handle(workflow_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.PINNED.value
    return info.deployment_version.build_id


async def run_events(temporal: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    handle = temporal.get_workflow_handle(workflow_id, run_id=run_id)
    return [e async for e in handle.fetch_history_events()]


def task_builds(events: list[HistoryEvent]) -> set[str]:
    """The builds that completed the run's workflow tasks."""
    return {
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }


async def routed(temporal: Client, deployment: str) -> None:
    """Wait (30 s at most) until the server reports the new routing passed to every task
    queue of the deployment: a message dispatched before that may find the change unseen
    and be answered on the old build (the session then moves with a later message). On
    a loaded dev server the report sometimes stays "in progress" for minutes after the
    queues route by the new build; the test then goes on and its assertions decide."""
    done = RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED
    request = DescribeWorkerDeploymentRequest(
        namespace=temporal.namespace, deployment_name=deployment
    )
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while True:
                found = await temporal.workflow_service.describe_worker_deployment(request)
                if found.worker_deployment_info.routing_config_update_state == done:
                    return
                await asyncio.sleep(0.1)


async def answer(session: Session, text: str) -> str:
    sent = await session.send(text)
    outcome = await asyncio.wait_for(sent.outcome, 30)
    assert outcome.status is TurnStatus.FINISHED
    [reply] = [m for m in await session.history() if m.id == sent.assistant_message_id]
    return reply.text()


async def first_run(temporal: Client, workflow_id: str) -> str:
    return (await temporal.get_workflow_handle(workflow_id).describe()).run_id


async def test_an_idle_session_that_opted_in_moves_to_the_new_build_with_its_next_message(
    temporal: Client, redis: Redis, task_queue: str, tmp_path: Path, unique_id: str
) -> None:
    options = WorkerOptions(
        task_queue=task_queue, deployment=task_queue, sandbox_root=tmp_path / "sandboxes"
    )
    agents = [upgrading_agent, pinned_agent]
    client = SessionClient(temporal, redis, task_queue=task_queue)
    build_a = build_worker(temporal, redis, agents, dataclasses.replace(options, build_id="A"))
    async with build_a:
        assert await build_a.claimed() is True
        moving = client.agent(upgrading_agent).session(f"{unique_id}-moving")
        staying = client.agent(pinned_agent).session(f"{unique_id}-staying")
        for session in (moving, staying):
            assert await answer(session, "one") == "Turn 1: you said one; I see 2."
        moving_a_run = await first_run(temporal, moving.workflow_id)
        staying_a_run = await first_run(temporal, staying.workflow_id)

        build_b = build_running(
            SandboxAfterSession,
            temporal,
            redis,
            agents,
            dataclasses.replace(options, build_id="B", make_current="never"),
        )
        # B's code does not replay what A recorded: only a new run can move to it.
        failure = await replay_failure(temporal, moving.workflow_id, SandboxAfterSession)
        assert "Nondeterminism" in failure

        async with build_b:
            await build_b.wait_polling(30)
            await versions.set_current(temporal, task_queue, "B")
            await routed(temporal, task_queue)
            # Idle sessions stay where they are until a message comes.
            assert await build_of(temporal, moving.workflow_id) == "A"

            # The next message is answered on B, in a new run, with all that came before.
            assert await answer(moving, "two") == "Turn 2: you said two; I see 4."
            info = await moving.info()
            assert info.run_count == 2 and info.message_count == 4
            assert [m.text() for m in await moving.history()] == [
                "one",
                "Turn 1: you said one; I see 2.",
                "two",
                "Turn 2: you said two; I see 4.",
            ]
            assert await build_of(temporal, moving.workflow_id) == "B"
            old = await run_events(temporal, moving.workflow_id, moving_a_run)
            new = [
                e
                async for e in temporal.get_workflow_handle(
                    moving.workflow_id
                ).fetch_history_events()
            ]
            assert task_builds(old) == {"A"} and task_builds(new) == {"B"}
            # A took the message and handed it over without a model step; B's code ran it.
            assert scheduled(old) == [ActivityName.MODEL_STEP.value]
            assert scheduled(new) == [
                ActivityName.MODEL_STEP.value,
                ActivityName.ENSURE_SANDBOX.value,
            ]
            assert old[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            assert task_failures(old) == task_failures(new) == []

            # Without the option the session stays pinned: A answers in the same run.
            assert await answer(staying, "two") == "Turn 2: you said two; I see 4."
            assert await first_run(temporal, staying.workflow_id) == staying_a_run
            assert await build_of(temporal, staying.workflow_id) == "A"
            events = await run_events(temporal, staying.workflow_id, staying_a_run)
            assert task_builds(events) == {"A"}
            assert ActivityName.ENSURE_SANDBOX.value not in scheduled(events)
            assert task_failures(events) == []

            # Once moved, the session stays on B: its next turn runs in the same run.
            assert await answer(moving, "three") == "Turn 3: you said three; I see 6."
            assert (await moving.info()).run_count == 2


async def first_input(temporal: Client, workflow_id: str) -> SessionInput:
    started = await anext(aiter(temporal.get_workflow_handle(workflow_id).fetch_history_events()))
    [found] = await temporal.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads, [SessionInput]
    )
    assert isinstance(found, SessionInput)
    return found


async def test_the_agent_else_the_client_else_explicit_limits_decide_at_start(
    start_worker: StartWorker, temporal: Client, redis: Redis, task_queue: str, unique_id: str
) -> None:
    unset = agent("unset", model=ECHO)
    refusing = agent("refusing", model=ECHO, upgrade_on_new_build=False)
    await start_worker([upgrading_agent, unset, refusing])
    off = SessionClient(temporal, redis, task_queue=task_queue)
    on = SessionClient(temporal, redis, task_queue=task_queue, upgrade_on_new_build=True)
    pinned_limits = SessionLimits(upgrade_on_new_build=False)
    fixed = SessionClient(
        temporal, redis, task_queue=task_queue, upgrade_on_new_build=True, limits=pinned_limits
    )
    for number, (client, named, expected) in enumerate(
        (
            (off, unset, False),
            (off, upgrading_agent, True),
            (on, unset, True),
            (on, refusing, False),
            (on, "unset", True),  # by name: the client's default
            (fixed, upgrading_agent, False),
        )
    ):
        session = client.agent(named).session(f"{unique_id}-{number}")
        await session.send("hello")
        found = await first_input(temporal, session.workflow_id)
        assert found.limits.upgrade_on_new_build is expected, number


def test_the_option_is_a_switch() -> None:
    assert Settings.from_env({}).upgrade_on_new_build is False
    assert Settings.from_env({"SESSIONFLOW_UPGRADE_ON_NEW_BUILD": "on"}).upgrade_on_new_build
    with pytest.raises(ConfigError, match="SESSIONFLOW_UPGRADE_ON_NEW_BUILD must be on or off"):
        Settings.from_env({"SESSIONFLOW_UPGRADE_ON_NEW_BUILD": "sometimes"})
    with pytest.raises(ValueError, match="upgrade_on_new_build must be True, False or None"):
        agent("bad", model=ECHO, upgrade_on_new_build="yes")  # type: ignore[arg-type]
    # Runs started before the option carry limits without it: they stay pinned.
    assert SessionLimits.model_validate({"max_steps_per_turn": 4}).upgrade_on_new_build is False
