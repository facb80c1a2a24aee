"""The session's sandbox, from the workflow's side: made on first use, pointed at
another one by `update`, commanded by `sandbox_exec`, paused when the session is idle.
(Killing it is the session's end: `workflows.ending`.)

The session records only the sandbox's id; every call here is an activity, since the
sandbox backends (and their network) live on workers. A sandbox that will not pause
is no reason for the session to fail: it keeps running until its next use or the
session's close, which kills it.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import (
        ActivityName,
        EnsureSandboxParams,
        ExecRequest,
        ExecResult,
        SandboxExecParams,
        SandboxRef,
        SandboxStatus,
        StepRef,
    )
    from sessionflow.workflows import calls, policies


async def ensure(
    ref: StepRef, sandbox_id: str | None, summary: str, *, must_exist: bool = False
) -> str:
    """The id of the sandbox asked for: a new one (`sandbox_id` None), a new one for a
    sandbox that vanished, or an existing one (`must_exist`: `SandboxNotFound` if not)."""
    made: SandboxRef = await calls.call(
        ActivityName.ENSURE_SANDBOX,
        EnsureSandboxParams(ref=ref, sandbox_id=sandbox_id, must_exist=must_exist),
        SandboxRef,
        policies.SANDBOX_LIFECYCLE,
        summary=summary,
    )
    return made.sandbox_id


async def execute(ref: StepRef, sandbox_id: str, request: ExecRequest) -> ExecResult:
    """Run one command of `sandbox_exec` in the sandbox."""
    return await calls.call(
        ActivityName.SANDBOX_EXEC,
        SandboxExecParams(ref=ref, sandbox_id=sandbox_id, request=request),
        ExecResult,
        policies.TOOL,
        summary=f"exec: {request.command[:80]}",
    )


async def status(sandbox_id: str) -> SandboxStatus:
    found: SandboxStatus = await _lifecycle(
        ActivityName.SANDBOX_STATUS, sandbox_id, "sandbox status", result_type=SandboxStatus
    )
    return found


async def pause_idle(sandbox_id: str | None) -> None:
    """Pause the sandbox of a session gone idle; a failure is logged, not raised."""
    try:
        await _lifecycle(ActivityName.SANDBOX_PAUSE, sandbox_id, "pause idle sandbox")
    except ActivityError as err:
        workflow.logger.warning("could not pause the idle sandbox: %s", err)


async def _lifecycle(
    name: ActivityName, sandbox_id: str | None, what: str, result_type: type | None = None
) -> Any:
    return await calls.call(
        name,
        sandbox_id,
        result_type,
        policies.SANDBOX_LIFECYCLE,
        summary=f"{what} {sandbox_id}",
    )
