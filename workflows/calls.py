"""Calling activities from workflow code: by their stable names, with a preset's
timeouts and retries, optionally overridden per agent or per tool.

Activities are named (`ActivityName`) rather than imported, so the workflow sandbox
never imports their dependencies (Redis, model SDKs, user code).
"""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from sessionflow.contract import ActivityName, ActivitySettings
    from sessionflow.workflows.policies import ActivityPreset

ResultT = TypeVar("ResultT")


def start(
    name: ActivityName,
    params: Any,
    result_type: type[ResultT] | Any,
    preset: ActivityPreset,
    *,
    summary: str,
    settings: ActivitySettings | None = None,
    cancellable: bool = False,
) -> workflow.ActivityHandle[ResultT]:
    """Schedule an activity; `settings` (an agent's or a tool's) override the preset.

    A `cancellable` activity may still complete with its partial result after it is
    cancelled (a model step keeps the text it streamed before an interrupt).
    """
    chosen = preset.overridden_by(settings)
    return workflow.start_activity(
        name.value,
        params,
        result_type=result_type,
        start_to_close_timeout=chosen.start_to_close,
        heartbeat_timeout=chosen.heartbeat,
        retry_policy=chosen.retry,
        summary=summary,
        cancellation_type=(
            ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if cancellable
            else ActivityCancellationType.TRY_CANCEL
        ),
    )


async def call(
    name: ActivityName,
    params: BaseModel | str | None,
    result_type: type[ResultT] | Any,
    preset: ActivityPreset,
    *,
    summary: str,
) -> ResultT:
    """Run an activity to completion with the preset's timeouts and retries."""
    result: ResultT = await start(name, params, result_type, preset, summary=summary)
    return result


async def local_or_refused(
    name: ActivityName,
    params: BaseModel,
    preset: ActivityPreset,
    *,
    summary: str,
    result_type: type[ResultT],
) -> ResultT:
    """`local`, for an update handler: the activity's own refusal (an application
    error, e.g. an unknown message) is raised as the workflow's, so the update fails
    with that error type for the client to name."""
    try:
        result = await local(name, params, preset, summary=summary, result_type=result_type)
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise ApplicationError(cause.message, type=cause.type) from None
        raise
    assert result is not None
    return result


async def local(
    name: ActivityName,
    params: BaseModel | str,
    preset: ActivityPreset,
    *,
    summary: str,
    result_type: type[ResultT] | None = None,
) -> ResultT | None:
    """Run a short local activity (a Redis or payload store write) with the preset's
    timeout and retries; its result (if `result_type`) is all history records of it."""
    try:
        result: ResultT | None = await workflow.execute_local_activity(
            name.value,
            params,
            result_type=result_type,
            start_to_close_timeout=preset.start_to_close,
            retry_policy=preset.retry,
            summary=summary,
        )
    except ActivityError:
        raise
    except ApplicationError as err:
        # A local activity that fails for good (a non-retryable error) comes back as
        # its bare failure, not an ActivityError: raised as it is, it failed the whole
        # workflow (a worker without a payload store, at its first transcript commit).
        # Callers handle a failed local activity as an ActivityError.
        raise ActivityError(
            f"local activity {name.value} failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=name.value,
            activity_id="",
            retry_state=None,
        ) from err
    return result
