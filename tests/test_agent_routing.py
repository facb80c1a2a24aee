"""Sessions reach only workers that serve their agent: a task queue per agent.

Two workers share one base task queue, each serving a different agent (as `sessionflow
dev` beside a `sessionflow worker --agents ...` of one's own does). Before per-agent
queues, half the turns landed on the worker without the agent and failed
AgentNotRegistered; now every one finishes on the right worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client

from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import LocalStack
from sessionflow.client import calls
from sessionflow.client.client import SessionClient
from sessionflow.client.services import ServicesRef
from sessionflow.config import Settings, agent_task_queue
from sessionflow.connections import connect_temporal, task_queue_pollers
from sessionflow.contract import TurnStatus
from sessionflow.errors import WorkerUnavailable
from sessionflow.providers.scripted import Script, ScriptStep
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker, task_queues


def echo_agent(name: str) -> object:
    script = Script(name=name, turns=[[ScriptStep(text=f"{name} here: {{last_user_text}}")]])
    return agent(name, model=script)


def test_each_agent_has_its_own_queue() -> None:
    agents = [echo_agent("alpha"), echo_agent("beta")]
    options = WorkerOptions(task_queue="base")
    assert task_queues(options, agents) == ["base.alpha", "base.beta"]  # type: ignore[arg-type]
    assert agent_task_queue("sessionflow", "assistant") == "sessionflow.assistant"


async def test_workers_of_different_agents_on_one_base_queue_each_get_only_their_sessions(
    stack: LocalStack,
    temporal: Client,
    redis: Redis,
    task_queue: str,
    tmp_path: Path,
    unique_id: str,
) -> None:
    alpha, beta = echo_agent("alpha"), echo_agent("beta")
    options = WorkerOptions(task_queue=task_queue, sandbox_root=tmp_path / "sandboxes")
    # Two worker processes, as it were: one client each.
    settings = stack.config.point(Settings())
    other = await connect_temporal(
        settings.temporal_address, external_storage=external_storage_from_settings(settings)
    )
    async with (
        build_worker(temporal, redis, [alpha], options),  # type: ignore[list-item]
        build_worker(other, redis, [beta], options),  # type: ignore[list-item]
    ):
        client = SessionClient(temporal, redis, task_queue=task_queue)
        sessions = [
            client.agent(("alpha", "beta")[i % 2]).session(f"{unique_id}-{i}") for i in range(6)
        ]
        results = [await s.send(f"message {i}") for i, s in enumerate(sessions)]
        outcomes = await asyncio.wait_for(asyncio.gather(*(r.outcome for r in results)), timeout=60)
        assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 6, outcomes
        for i, session in enumerate(sessions):
            history = await session.history()
            assert history[-1].text() == f"{session.agent} here: message {i}"
            described = await temporal.get_workflow_handle(session.workflow_id).describe()
            assert described.task_queue == f"{task_queue}.{session.agent}"


async def test_the_worker_says_it_polls_only_once_the_server_has_seen_it(
    temporal: Client, redis: Redis, task_queue: str, tmp_path: Path
) -> None:
    options = WorkerOptions(task_queue=task_queue, sandbox_root=tmp_path / "sandboxes")
    worker = build_worker(temporal, redis, [echo_agent("alpha")], options)  # type: ignore[list-item]
    async with worker:
        await worker.wait_polling(30)
        queue = f"{task_queue}.alpha"
        for kind in (
            TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        ):
            assert temporal.identity in await task_queue_pollers(temporal, queue, kind), kind
        # Nobody polls a queue no worker serves.
        empty = await task_queue_pollers(
            temporal, f"{task_queue}.nobody", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        )
        assert empty == set()


async def test_a_new_session_of_an_agent_no_worker_serves_is_refused_at_send(
    temporal: Client,
    redis: Redis,
    task_queue: str,
    tmp_path: Path,
    unique_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing would ever answer it: the send says so instead of leaving it waiting."""
    monkeypatch.setattr(calls, "WORKER_GRACE_SECONDS", 1.0)
    options = WorkerOptions(task_queue=task_queue, sandbox_root=tmp_path / "sandboxes")
    async with build_worker(temporal, redis, [echo_agent("alpha")], options):  # type: ignore[list-item]
        client = SessionClient(temporal, redis, task_queue=task_queue)
        ghost = client.agent("ghost").session(unique_id)
        with pytest.raises(
            WorkerUnavailable,
            match=f"no worker serves agent 'ghost' \\(task queue '{task_queue}.ghost'\\)",
        ):
            await ghost.send("anyone?")
        assert not await calls.SessionCalls(
            ServicesRef(client._services()), session_id=unique_id, agent="ghost",
            workflow_id=ghost.workflow_id,
        ).exists(), "the refused session was started anyway"  # fmt: skip
        # A worker that starts within the grace period gets the session.
        monkeypatch.setattr(calls, "WORKER_GRACE_SECONDS", 30.0)
        late = build_worker(temporal, redis, [echo_agent("ghost")], options)  # type: ignore[list-item]
        sending = asyncio.create_task(client.agent("ghost").session(unique_id).send("now?"))
        await asyncio.sleep(1)
        async with late:
            result = await asyncio.wait_for(sending, 30)
            assert (await asyncio.wait_for(result.outcome, 30)).status is TurnStatus.FINISHED
