"""Temporal's tracing interceptor with the turn's span (`sessionflow.tracing`); imported
only when traces are on, since it needs the `otel` extra."""

from __future__ import annotations

from typing import Any

import opentelemetry.trace
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import WorkflowInterceptorClassInput

from sessionflow.contract import TURN_SPAN


class SessionTracing(TracingInterceptor):
    """Temporal's tracing interceptor, lending the workflow the turn's span too.

    Workflow spans are made whether or not the session's starter traced its call
    (`always_create_workflow_spans`): a session is started by whoever sends first,
    and the turns are what an operator wants to see."""

    def __init__(self, tracer: opentelemetry.trace.Tracer | None = None) -> None:
        super().__init__(tracer, always_create_workflow_spans=True)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> Any:
        interceptor = super().workflow_interceptor_class(input)
        input.unsafe_extern_functions[TURN_SPAN] = self._turn_span
        return interceptor

    def _turn_span(self, turn: dict[str, Any]) -> None:
        """The turn's span (`workflows.tracing.report_turn`), in the trace of the
        run it belongs to when that run's span is current here."""
        span = self.tracer.start_span(
            f"invoke_agent {turn['agent']}",
            self.text_map_propagator.extract(turn["carrier"]),
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": turn["agent"],
                "gen_ai.conversation.id": turn["session_id"],
                "sessionflow.message_id": turn["message_id"],
                "sessionflow.turn.status": turn["status"],
                "sessionflow.turn.steps": turn["steps"],
                "temporalWorkflowID": turn["workflow_id"],
                "temporalRunID": turn["run_id"],
            },
            start_time=turn["start_ns"],
        )
        if turn["status"] == "failed":
            span.set_status(opentelemetry.trace.Status(opentelemetry.trace.StatusCode.ERROR))
        span.end(end_time=turn["end_ns"])
