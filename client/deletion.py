"""Deleting a session: erased everywhere it was stored, so nothing of it remains.

1. The session's newest run, if it still runs, gets the `delete` update: it interrupts
   the running turn, drops queued messages, kills the sandbox, erases the session's
   Redis keys and payload store objects, and completes.
2. If that run had already ended (closed, failed, terminated, timed out), the ended run
   is asked (queries work on closed runs) for the sandbox it held, and a run started
   only to erase the session (`SessionInput.erase`) kills the sandbox and erases the
   rest, on a worker: workers own the sandbox backend and the payload store.
3. Then every run of the workflow id, the erasing one included, is deleted from
   Temporal (found through visibility and the current run; visibility forgets them a
   little later by itself).

Afterwards the session is unknown (`SessionNotFound`), and a session started under
the same id starts clean.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sessionflow import errors
from sessionflow.client.calls import QUERY_PATIENCE_SECONDS, SessionCalls, known_error
from sessionflow.client.services import Services
from sessionflow.contract import EraseOrder, SessionInfo, SessionInput
from sessionflow.workflows.session import SessionWorkflow

log = structlog.get_logger(__name__)

# How long a delete waits for the session's run to end, and for Temporal's visibility
# to stop listing its runs.
RUN_PATIENCE_SECONDS = 60.0
# A cluster removes a deleted run once its transfer queue's ack level passes the run's
# close, every 30 s by default (`history.transferProcessorUpdateAckInterval`; the local
# stack sets 1 s), and visibility forgets it a moment later.
VISIBILITY_PATIENCE_SECONDS = 90.0
_CONTINUING = "SessionContinuing"


async def delete_session(calls: SessionCalls, services: Services, session_id: str) -> None:
    """Erase the session everywhere; `SessionNotFound` if there is none."""
    temporal = services.temporal
    handle = temporal.get_workflow_handle_for(SessionWorkflow.run, calls.workflow_id)
    deadline = time.monotonic() + RUN_PATIENCE_SECONDS
    while True:
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise calls.rpc_error(err) from err
            # Nothing in Temporal; a send that failed may have left a Redis key.
            await services.reader.erase(calls.workflow_id)
            raise calls.rpc_error(err) from err
        if description.status is WorkflowExecutionStatus.RUNNING:
            if await _delete_running(handle):
                break
        else:
            await _erase_ended(calls, services, handle, session_id, description.task_queue)
            break
        if time.monotonic() > deadline:
            raise errors.SessionStuck(f"session {session_id!r} kept moving while being deleted")
    await delete_runs(temporal, calls.workflow_id)


async def _delete_running(handle: WorkflowHandle[SessionWorkflow, None]) -> bool:
    """The `delete` update, then the run's end; False when the run ended (or moved on)
    first, so the caller looks again."""
    try:
        await handle.execute_update("delete")
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == _CONTINUING:
            await asyncio.sleep(0.1)
            return False
        known = known_error(err)
        if known is not None:
            raise known from err
        raise
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:  # it ended meanwhile
            return False
        raise
    async with asyncio.timeout(RUN_PATIENCE_SECONDS):
        await handle.result(follow_runs=False)
    return True


async def _erase_ended(
    calls: SessionCalls,
    services: Services,
    handle: WorkflowHandle[SessionWorkflow, None],
    session_id: str,
    task_queue: str,
) -> None:
    """Erase a session whose run has ended, with a run started for that alone."""
    sandbox_id: str | None = None
    try:
        async with asyncio.timeout(QUERY_PATIENCE_SECONDS):
            info: SessionInfo = await handle.query(SessionWorkflow.info)
        sandbox_id = info.sandbox_id
    except (RPCError, TimeoutError) as err:
        # A run that cannot be replayed (or no worker answers): its sandbox is unknown.
        log.warning(
            "could not ask the ended run for its sandbox; erasing the rest",
            workflow_id=calls.workflow_id,
            error=str(err),
        )
    erasing = await services.temporal.start_workflow(
        SessionWorkflow.run,
        SessionInput(
            session_id=session_id,
            agent=calls.agent,
            erase=EraseOrder(sandbox_id=sandbox_id),
            search_attributes=False,
        ),
        id=calls.workflow_id,
        task_queue=task_queue,
        static_summary=f"{calls.agent}: erase session {session_id}",
    )
    async with asyncio.timeout(RUN_PATIENCE_SECONDS):
        await erasing.result(follow_runs=False)


async def delete_runs(temporal: Client, workflow_id: str) -> None:
    """Delete every run of `workflow_id` from Temporal, closed ones included, and wait
    until none of them can be described any more (`SessionStuck` if one still can).

    Runs are found through visibility and the current run; visibility forgets deleted
    runs a moment after they are gone, by itself."""
    escaped = workflow_id.replace("\\", "\\\\").replace('"', '\\"')
    runs = {w.run_id async for w in temporal.list_workflows(f'WorkflowId = "{escaped}"')}
    deadline = time.monotonic() + VISIBILITY_PATIENCE_SECONDS
    while True:
        try:
            runs.add((await temporal.get_workflow_handle(workflow_id).describe()).run_id)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
        left = [run_id for run_id in runs if await _still_there(temporal, workflow_id, run_id)]
        if not left:
            return
        for run_id in left:
            await _delete_run(temporal, workflow_id, run_id)
        if time.monotonic() > deadline:
            raise errors.SessionStuck(
                f"Temporal still has {len(left)} run(s) of {workflow_id!r} after "
                f"{VISIBILITY_PATIENCE_SECONDS:g} s; delete the session again"
            )
        await asyncio.sleep(0.2)


async def _still_there(temporal: Client, workflow_id: str, run_id: str) -> bool:
    try:
        await temporal.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _delete_run(temporal: Client, workflow_id: str, run_id: str) -> None:
    try:
        await temporal.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            )
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
