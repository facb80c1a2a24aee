"""Two builds of the worker in one test: the second with a workflow change that does not
replay the first's histories, as a deploy that would wedge sessions without Worker
Versioning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sessionflow.agents.definition import Agent
from sessionflow.worker import build as build_module
from sessionflow.worker.build import _WORKFLOW_RUNNER, SessionWorker, WorkerOptions, build_worker


def build_running(
    workflow_class: type[Any],
    temporal: Client,
    redis: Redis,
    agents: Sequence[Agent],
    options: WorkerOptions,
) -> SessionWorker:
    """A worker whose session workflow is `workflow_class` instead of ours."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build_module, "SessionWorkflow", workflow_class)
        return build_worker(temporal, redis, agents, options)


async def replay_failure(temporal: Client, workflow_id: str, workflow_class: type[Any]) -> str:
    """Why the session's recorded history does not replay on `workflow_class` ("" if it
    does)."""
    recorded = await temporal.get_workflow_handle(workflow_id).fetch_history()
    result = await Replayer(
        workflows=[workflow_class],
        data_converter=pydantic_data_converter,
        workflow_runner=_WORKFLOW_RUNNER,
    ).replay_workflow(recorded, raise_on_replay_failure=False)
    return "" if result.replay_failure is None else str(result.replay_failure)


def scheduled(events: list[HistoryEvent]) -> list[str]:
    """The activity types a run's history scheduled, in order."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def task_failures(events: list[HistoryEvent]) -> list[str]:
    """Why each failed workflow task of a run's history failed (a non-determinism)."""
    return [
        e.workflow_task_failed_event_attributes.failure.message
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
