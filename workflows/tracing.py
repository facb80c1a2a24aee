"""The turn's span, told from workflow code (`sessionflow.tracing`).

Temporal's tracing interceptor ends every span that workflow code makes at once (a
span left open is not replay-safe), so a turn is reported as it ends: one span with the
turn's real start and end (workflow time, the same on every replay), parented on the
run's trace, through a function the worker's interceptor lends the workflow. Nothing
happens without tracing (no such function), or on replay (it was reported already).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import TURN_SPAN


def report_turn(
    started_ns: int, *, agent: str, session_id: str, message_id: str, status: str, steps: int
) -> None:
    emit = workflow.extern_functions().get(TURN_SPAN)
    if emit is None or workflow.unsafe.is_replaying():
        return
    # Lent only by a worker that traces, so OpenTelemetry is there: the run's trace
    # context, for the span's parent, carried as the interceptor carries it.
    from temporalio.contrib.opentelemetry import TracingWorkflowInboundInterceptor

    carrier: dict[str, str] = {}
    interceptor = TracingWorkflowInboundInterceptor._from_context()
    if interceptor is not None:
        interceptor.text_map_propagator.inject(carrier)
    emit(
        {
            "carrier": carrier,
            "start_ns": started_ns,
            "end_ns": workflow.time_ns(),
            "workflow_id": workflow.info().workflow_id,
            "run_id": workflow.info().run_id,
            "agent": agent,
            "session_id": session_id,
            "message_id": message_id,
            "status": status,
            "steps": steps,
        }
    )
