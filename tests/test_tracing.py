"""OpenTelemetry traces: a turn with tool calls is a trace with a span for the turn, one
per model step (GenAI semantic conventions) and one per tool call; traces stay off
without the `OTEL_*` variables, and those variables do not reach the embedded
Temporal dev server (which refuses to start on values it does not support)."""

from __future__ import annotations

from pathlib import Path

import opentelemetry.trace
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.contract import TurnStatus
from sessionflow.tracing import tracing_configured, tracing_from_settings
from sessionflow.tracing_interceptor import SessionTracing
from tests.agents import tool_agent
from tests.conftest import StartWorker

EXPORTED = InMemorySpanExporter()


def provider() -> TracerProvider:
    """The process's tracer provider, exporting to `EXPORTED` (the global one can be set
    once per process: this test module sets it)."""
    current = opentelemetry.trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(EXPORTED))
    opentelemetry.trace.set_tracer_provider(made)
    return made


def spans_of(workflow_id: str) -> list[ReadableSpan]:
    mine = []
    for span in EXPORTED.get_finished_spans():
        attributes = span.attributes or {}
        if (
            attributes.get("temporalWorkflowID") == workflow_id
            or str(attributes.get("gen_ai.conversation.id", "")) in workflow_id.split(":", 2)[-1:]
        ):
            mine.append(span)
    return mine


async def test_a_turn_with_tool_calls_is_traced(
    start_worker: StartWorker, temporal: Client, redis: Redis, task_queue: str, unique_id: str
) -> None:
    tracing = SessionTracing(provider().get_tracer("sessionflow"))
    client = await start_worker([tool_agent], tracing=tracing)
    # The session started by a client that traces too: its run joins the start's trace.
    config = temporal.config()
    config["interceptors"] = [tracing]
    traced = SessionClient(Client(**config), redis, task_queue=task_queue)
    result = await traced.agent("tooling").session(unique_id).send("list the files")
    session = client.agent("tooling").session(unique_id)
    assert (await result.outcome).status is TurnStatus.FINISHED

    spans = spans_of(session.workflow_id)
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    [turn] = by_name["invoke_agent tooling"]
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert turn.attributes["gen_ai.conversation.id"] == unique_id
    assert turn.attributes["sessionflow.message_id"] == result.assistant_message_id
    assert turn.attributes["sessionflow.turn.status"] == "finished"
    assert turn.attributes["sessionflow.turn.steps"] == 3
    assert turn.end_time is not None and turn.start_time is not None
    assert turn.end_time > turn.start_time  # the turn's real length, not a marker

    steps = by_name["chat tooling"]
    assert len(steps) == 3
    usage = (await session.usage()).total
    for step in steps:
        attributes = step.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "tooling"
        assert attributes["gen_ai.provider.name"] == "scripted"
        assert attributes["sessionflow.message_id"] == result.assistant_message_id
        assert isinstance(attributes["gen_ai.usage.input_tokens"], int)
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in steps) == usage.input_tokens  # type: ignore[index,misc]
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in steps) == usage.output_tokens  # type: ignore[index,misc]

    tools = by_name["execute_tool Bash"]
    assert len(tools) == 2
    for tool in tools:
        attributes = tool.attributes or {}
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.name"] == "Bash"
        assert str(attributes["gen_ai.tool.call.id"])

    # One trace, the start's: each step and tool runs inside Temporal's RunActivity
    # span, in the trace of the session's run, as the turn's span is.
    runs = {s.context.span_id: s for s in by_name["RunActivity:sessionflow.model_step"]}
    for step in steps:
        assert step.parent is not None and step.parent.span_id in runs
    traces = {s.context.trace_id for s in [turn, *steps, *tools]}
    assert len(traces) == 1


def test_traces_are_off_unless_the_otel_variables_configure_an_exporter() -> None:
    assert tracing_from_settings(Settings()) is None
    assert not tracing_configured(Settings(otel_traces_exporter="none"))
    on = Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
    assert tracing_configured(on)
    off = Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:4318", otel_traces_exporter="none")
    assert not tracing_configured(off)


async def test_otel_variables_do_not_stop_the_embedded_temporal_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each of these alone makes `temporal server start-dev` refuse to start.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    async with LocalStack(StackConfig.on_free_ports(tmp_path)) as stack:
        assert stack.pid("temporal") is not None
