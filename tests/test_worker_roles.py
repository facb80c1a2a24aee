"""Workflow tasks and activities in separate worker processes (`--role`).

One workflows-only and one activities-only worker on one task queue make a complete
deployment: a session with tool calls finishes, every workflow task ran on the first
and every activity on the second, and neither polled the other's tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.client import Client

from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.config import ConfigError, Settings, WorkerRole, agent_task_queue
from sessionflow.connections import connect_temporal, task_queue_pollers
from sessionflow.contract import TurnStatus
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import TOOL_SCRIPT, tool_agent

REPO = Path(__file__).resolve().parent.parent


async def test_a_workflows_worker_and_an_activities_worker_run_a_session_between_them(
    stack: LocalStack,
    temporal: Client,
    redis: Redis,
    task_queue: str,
    tmp_path: Path,
    unique_id: str,
) -> None:
    options = WorkerOptions(task_queue=task_queue, sandbox_root=tmp_path / "sandboxes")
    workflows = WorkerOptions(
        **{**vars(options), "role": WorkerRole.WORKFLOWS, "identity": f"wf-{unique_id}"}
    )
    activities = WorkerOptions(
        **{**vars(options), "role": WorkerRole.ACTIVITIES, "identity": f"act-{unique_id}"}
    )
    # Two processes, as it were: one client each.
    settings = stack.config.point(Settings())
    other = await connect_temporal(
        settings.temporal_address, external_storage=external_storage_from_settings(settings)
    )
    async with (
        build_worker(temporal, redis, [tool_agent], workflows) as workflow_worker,  # type: ignore[list-item]
        build_worker(other, redis, [tool_agent], activities) as activity_worker,  # type: ignore[list-item]
    ):
        await asyncio.gather(workflow_worker.wait_polling(), activity_worker.wait_polling())
        client = SessionClient(temporal, redis, task_queue=task_queue)
        session = client.agent("tooling").session(unique_id)
        result = await session.send("go")
        outcome = await asyncio.wait_for(result.outcome, timeout=60)
        assert outcome.status is TurnStatus.FINISHED
        history = await session.history()
        assert history[-1].text() == "".join(s.text for s in TOOL_SCRIPT.turns[0]).replace(
            "{last_tool_output}", "hello"
        )

        queue = agent_task_queue(task_queue, "tooling")
        workflow_kind = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        activity_kind = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        assert f"act-{unique_id}" in await task_queue_pollers(temporal, queue, activity_kind)
        assert f"wf-{unique_id}" not in await task_queue_pollers(temporal, queue, activity_kind)
        assert f"wf-{unique_id}" in await task_queue_pollers(temporal, queue, workflow_kind)
        assert f"act-{unique_id}" not in await task_queue_pollers(temporal, queue, workflow_kind)

    events = [
        e async for e in temporal.get_workflow_handle(session.workflow_id).fetch_history_events()
    ]
    ran_activities = {
        e.activity_task_started_event_attributes.identity
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    }
    ran_workflow_tasks = {
        e.workflow_task_started_event_attributes.identity
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    }
    assert ran_activities == {f"act-{unique_id}"}
    # A workflow task the server hands the worker in its answer to the one before (no
    # poll: scheduled and started in the same instant) is recorded with no identity.
    assert ran_workflow_tasks - {""} == {f"wf-{unique_id}"}


def test_the_worker_role_comes_from_the_environment_and_a_bad_one_is_named() -> None:
    assert Settings.from_env({}).worker_role is WorkerRole.ALL
    env = {"SESSIONFLOW_WORKER_ROLE": "Activities"}
    assert Settings.from_env(env).worker_role is WorkerRole.ACTIVITIES
    with pytest.raises(ConfigError, match="SESSIONFLOW_WORKER_ROLE must be one of all, "):
        Settings.from_env({"SESSIONFLOW_WORKER_ROLE": "both"})


async def test_sessionflow_worker_role_activities_polls_activity_tasks_only(
    stack: LocalStack, temporal: Client, task_queue: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": stack.config.temporal_address,
        "REDIS_URL": stack.config.redis_url,
        "SESSIONFLOW_TASK_QUEUE": task_queue,
        "SESSIONFLOW_SANDBOX_ROOT": str(tmp_path / "sandboxes"),
        "SESSIONFLOW_PAYLOAD_STORE": stack.config.payload_store,
        "SESSIONFLOW_LOG_FORMAT": "json",
        "SESSIONFLOW_METRICS_ADDRESS": "",
        # The option wins over the environment.
        "SESSIONFLOW_WORKER_ROLE": "workflows",
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "sessionflow", "worker", "--agents", "tests.agents:tool_agent"]
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*command, "--role", "activities"], env=env, cwd=REPO, stdout=out, stderr=out
        )
    try:
        async with asyncio.timeout(60):
            while b"worker started" not in log.read_bytes():
                assert worker.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
        started = next(
            json.loads(line) for line in log.read_text().splitlines() if "worker started" in line
        )
        assert started["role"] == "activities"
        identity = f"{worker.pid}@{socket.gethostname()}"
        queue = agent_task_queue(task_queue, "tooling")
        assert identity in await task_queue_pollers(
            temporal, queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        )
        assert identity not in await task_queue_pollers(
            temporal, queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        )
    finally:
        worker.terminate()
        worker.wait(30)


def test_an_unknown_role_is_refused_by_the_command_line() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "sessionflow", "worker", "--role", "both"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert ran.returncode == 2
    assert "'both' is not one of 'all', 'workflows', 'activities'" in ran.stderr
