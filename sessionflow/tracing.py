"""OpenTelemetry traces of sessions: off by default, on when the standard `OTEL_*`
variables configure an exporter (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_TRACES_EXPORTER=none` keeps them off).

A worker then installs Temporal's tracing interceptor
(`temporalio.contrib.opentelemetry.TracingInterceptor`), and so does a client
connected with `SessionClient.connect` (the gateway's, the CLI's): a session started
by a traced client runs in the trace of that start. The interceptor makes spans of what the
workflow does (`RunWorkflow`, `HandleSignal:send`, `StartActivity:*`, zero-length by
its design) and of each activity's run (`RunActivity:*`, with real durations), and
carries the trace from workflow to activity in Temporal headers. Within those:

- `invoke_agent <agent>`: one turn, from its message to its end, with its outcome
  (`workflows.tracing`, reported as the turn ends through a function this interceptor
  lends the workflow);
- `chat <model>`: a model step, in the GenAI semantic conventions (`gen_ai.request.model`,
  `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, ...; `activities.spans`);
- `execute_tool <name>`: a tool call (`gen_ai.tool.name`, `gen_ai.tool.call.id`).

Spans go out through the OTLP exporter (`http/protobuf`, or `grpc` with
`OTEL_EXPORTER_OTLP_PROTOCOL=grpc` and `opentelemetry-exporter-otlp-proto-grpc`
installed), which reads the rest of its settings (headers, timeouts, the service
name in `OTEL_SERVICE_NAME`) from the `OTEL_*` variables itself. Needs the `otel`
extra: `pip install 'sessionflow[otel]'`.
"""

from __future__ import annotations

from typing import Any

from sessionflow.config import ConfigError, Settings
from sessionflow.contract import TURN_SPAN

try:
    import opentelemetry.trace
    from temporalio.contrib.opentelemetry import TracingInterceptor
    from temporalio.worker import WorkflowInterceptorClassInput
except ImportError:  # pragma: no cover - the `otel` extra is not installed
    TracingInterceptor = None  # type: ignore[assignment,misc]

# The provider made from the settings, once per process (a worker and a gateway may
# share one, as in `sessionflow dev`).
_made: list[Any] = []


def tracing_configured(settings: Settings) -> bool:
    """Whether the `OTEL_*` variables ask for traces."""
    if (settings.otel_traces_exporter or "").strip().lower() == "none":
        return False
    return bool(settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint)


def tracing_from_settings(settings: Settings) -> Any | None:
    """The worker interceptor that traces sessions, exporting with OTLP as the `OTEL_*`
    variables say; None when they configure no exporter. `ConfigError` when they do but
    the `otel` extra is not installed."""
    if not tracing_configured(settings):
        return None
    if TracingInterceptor is None:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but OpenTelemetry is not installed: "
            "pip install 'sessionflow[otel]' (or unset it)"
        )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = (settings.otel_exporter_otlp_protocol or "http/protobuf").strip().lower()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                "(pip install it), or use http/protobuf"
            ) from None
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    if not _made:
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, name the service.
        provider = TracerProvider(resource=Resource.create({"service.name": "sessionflow"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        opentelemetry.trace.set_tracer_provider(provider)
        _made.append(provider)
    return SessionTracing(_made[0].get_tracer("sessionflow"))


def flush_tracing() -> None:
    """Send the spans still buffered (a worker stopping)."""
    for provider in _made:
        provider.force_flush()


if TracingInterceptor is not None:

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
