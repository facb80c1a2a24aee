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

import structlog

from sessionflow.config import ConfigError, Settings

# The provider made from the settings, once per process (a worker and a gateway may
# share one, as in `sessionflow dev`).
_made: list[Any] = []
_warned: list[bool] = []


def tracing_configured(settings: Settings) -> bool:
    """Whether the `OTEL_*` variables ask for traces."""
    if (settings.otel_traces_exporter or "").strip().lower() == "none":
        return False
    return bool(settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint)


def tracing_from_settings(settings: Settings) -> Any | None:
    """The interceptor that traces sessions (for a worker or a client), exporting with
    OTLP as the `OTEL_*` variables say; None when they configure no exporter, or when
    the `otel` extra is not installed (a warning says so)."""
    if not tracing_configured(settings):
        return None
    # Imported only now: OpenTelemetry's and the interceptor's modules cost every
    # `SessionClient` user an import otherwise.
    try:
        import opentelemetry.trace

        from sessionflow.tracing_interceptor import SessionTracing
    except ImportError:
        # Not an error: the variables may be meant for another program in this shell.
        if not _warned:
            _warned.append(True)
            structlog.get_logger(__name__).warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set, but OpenTelemetry is not installed: no "
                "traces (pip install 'sessionflow[otel]')"
            )
        return None
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
