"""OpenTelemetry spans of model steps and tool calls, in the GenAI semantic conventions
(`gen_ai.*`): `chat <model>` around a model step, with the model, the token counts and
the finish reason; `execute_tool <name>` around a tool call.

They nest under the `RunActivity:*` spans of Temporal's tracing interceptor, which a
worker installs when tracing is configured (`sessionflow.tracing`). Without it
the OpenTelemetry API's no-op tracer makes them cost next to nothing; without the
`opentelemetry` package there are none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sessionflow.contract import ModelStepResult, RunToolResult, StepRef
from sessionflow.messages import ToolCall

try:
    from opentelemetry import trace
except ImportError:  # pragma: no cover - opentelemetry-api comes with the `otel` extra
    trace = None  # type: ignore[assignment]

TRACER = "sessionflow"


def _attributes(ref: StepRef) -> dict[str, Any]:
    return {
        "gen_ai.conversation.id": ref.session_id,
        "gen_ai.agent.name": ref.agent,
        "sessionflow.message_id": ref.message_id,
        "sessionflow.step": ref.step + 1,
    }


@contextlib.contextmanager
def model_step(ref: StepRef) -> Iterator[Any]:
    """The span of one model step; named and filled by `record_step`."""
    if trace is None:
        yield None
        return
    attributes = {"gen_ai.operation.name": "chat", **_attributes(ref)}
    with trace.get_tracer(TRACER).start_as_current_span("chat", attributes=attributes) as span:
        yield span


def record_step(span: Any, result: ModelStepResult) -> None:
    if span is None:
        return
    provider, _, model = result.model.partition("/")
    span.update_name(f"chat {model or provider}")
    span.set_attributes(
        {
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": model or provider,
            "gen_ai.response.model": model or provider,
            "gen_ai.response.finish_reasons": [result.finish_reason.value],
            "gen_ai.usage.input_tokens": result.usage.input_tokens,
            "gen_ai.usage.output_tokens": result.usage.output_tokens,
            "sessionflow.tool_calls": len(result.tool_calls),
        }
    )


@contextlib.contextmanager
def tool_call(ref: StepRef, call: ToolCall) -> Iterator[Any]:
    """The span of one tool call; `record_tool` marks a failed one."""
    if trace is None:
        yield None
        return
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.tool_name,
        "gen_ai.tool.call.id": call.tool_call_id,
        "gen_ai.tool.type": "function",
        **_attributes(ref),
    }
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(
        f"execute_tool {call.tool_name}", attributes=attributes
    ) as span:
        yield span


def record_tool(span: Any, result: RunToolResult) -> None:
    if span is None or trace is None or result.error_text is None:
        return
    span.set_attribute("error.type", "interrupted" if result.interrupted else "tool_error")
    span.set_status(trace.Status(trace.StatusCode.ERROR, result.error_text[:200]))
