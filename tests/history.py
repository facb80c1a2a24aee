"""Reading a session's Temporal history in tests: which activities ran, and how often."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client


async def workflow_events(temporal: Client, workflow_id: str) -> list[HistoryEvent]:
    """The events of the workflow's latest run."""
    return list((await temporal.get_workflow_handle(workflow_id).fetch_history()).events)


def scheduled_activities(events: list[HistoryEvent]) -> list[str]:
    """Activity types scheduled, in order."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def completed_activities(events: list[HistoryEvent]) -> int:
    return sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for e in events)


def activity_attempts(events: list[HistoryEvent]) -> list[int]:
    """The attempt number of every activity start, in order (2 and up are retries)."""
    return [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
