"""Whether a session's newest run has ended, and the error that says how.

Temporal answers an update or signal to a closed run with NOT_FOUND, while `describe`
still finds the run: judged by "does it exist", such a session looked like one moving
between runs, and every call on it was asked again for ever. Judged by the run's
status, it ends at once: a completed run is a closed session (`SessionClosed`); a run
that failed, was terminated, timed out or was cancelled is `SessionFailed`, naming the
cause from the run's close event. A run that continued as new has not ended: its
successor carries the session on (and `describe` without a run id shows the successor).
"""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
)
from temporalio.service import RPCError, RPCStatusCode

from sessionflow import errors
from sessionflow.streams.ended_runs import RunEnd

_FAILED = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}
# A cause quoted from history is cut here: a failure message can be long.
CAUSE_CHARS = 2000
_AFTERWARDS = (
    "it takes no more approvals, interrupts, updates, sandbox commands or waits; its "
    "history can still be read"
)
_REOPENS = ", and a `send` starts a new, empty session under the same id"
# A run that did not complete is not silently replaced by an empty one: whoever ended
# it (an operator's Terminate, say) decides whether the conversation goes on.
_STAYS = (
    ", and a `send` is refused too: `delete` the session to start a new, empty one "
    "under the same id"
)


async def ended_error(
    temporal: Client, description: WorkflowExecutionDescription, session_id: str
) -> errors.SessionEnded | None:
    """`SessionClosed` or `SessionFailed` for a run that has ended, else None."""
    how = await how_it_ended(temporal, description)
    if how is None:
        return None
    if how == "closed":
        return errors.SessionClosed(f"session {session_id!r} is closed: {_AFTERWARDS}{_REOPENS}")
    return errors.SessionFailed(f"session {session_id!r} ended ({how}): {_AFTERWARDS}{_STAYS}")


async def run_end(temporal: Client, workflow_id: str) -> RunEnd | None:
    """The `RunProbe` of the client's stream readers (`streams.ended_runs`): the newest
    run's end when it was terminated, failed, timed out or cancelled; None while it
    runs, or when it completed (a closed session ends its readers itself) or never ran."""
    try:
        description = await temporal.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    how = await how_it_ended(temporal, description)
    if how is None or how == "closed":
        return None
    return RunEnd(run_id=description.run_id or "", text=run_end_text(how))


def run_end_text(how: str) -> str:
    """What a reader is told when the run ended mid-answer, from `how_it_ended`'s
    `terminated: <reason> (by <identity>)`, `failed: ...`, `timed out: ...`."""
    kind, _, cause = how.partition(": ")
    verb = {"terminated": "was terminated", "cancelled": "was cancelled"}.get(kind, kind)
    return (
        f"the session's run {verb}{': ' + cause if cause else ''}; this answer ends here "
        "unfinished, and the session takes no more messages"
    )


async def how_it_ended(temporal: Client, description: WorkflowExecutionDescription) -> str | None:
    """None while the session runs; `closed` for a run that completed; else how it
    ended, from its close event: `terminated: <reason> (by <identity>)`, `failed: ...`,
    `timed out: ...`, `cancelled`."""
    status = description.status
    if status is WorkflowExecutionStatus.COMPLETED:
        return "closed"
    if status not in _FAILED:
        return None  # running, or continued as new (its successor runs)
    return await _close_cause(temporal, description) or _FAILED[status]


async def _close_cause(temporal: Client, description: WorkflowExecutionDescription) -> str | None:
    """What the run's close event says: `failed: <message>`, `terminated: <reason>`."""
    # This very run: a `send` may have started a newer one since it was described.
    handle = temporal.get_workflow_handle(description.id, run_id=description.run_id)
    try:
        async for event in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            return _describe_close(event)[:CAUSE_CHARS]
    except RPCError:
        return None  # the status alone still says how it ended
    return None


def _describe_close(event: HistoryEvent) -> str:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = event.workflow_execution_failed_event_attributes.failure
        error_type = failure.application_failure_info.type
        return f"failed: {error_type + ': ' if error_type else ''}{failure.message or '?'}"
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        terminated = event.workflow_execution_terminated_event_attributes
        by = f" (by {terminated.identity})" if terminated.identity else ""
        return f"terminated: {terminated.reason or 'no reason given'}{by}"
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return "timed out: the run's time limit passed"
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return "cancelled"
    return EventType.Name(kind).removeprefix("EVENT_TYPE_WORKFLOW_EXECUTION_").lower()
