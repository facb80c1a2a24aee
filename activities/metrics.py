"""Sessionflow's own metrics, through the Temporal runtime's meter.

They are exported wherever the worker's runtime exports the SDK's metrics (the
worker's Prometheus endpoint), beside them. Outside an activity they are dropped.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.common import MetricMeter

from sessionflow.contract import ModelStepResult


def _meter() -> MetricMeter | None:
    try:
        return activity.metric_meter()
    except RuntimeError:
        return None


def model_step(model: str, result: ModelStepResult) -> None:
    meter = _meter()
    if meter is None:
        return
    meter.create_counter("sessionflow_model_steps", "Model steps completed").add(
        1, {"model": model, "finish_reason": result.finish_reason.value}
    )
    tokens = meter.create_counter("sessionflow_tokens", "Tokens reported by model providers")
    usage = result.usage
    for kind, count in (
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("cache_write", usage.cache_write_tokens),
    ):
        if count:
            tokens.add(count, {"model": model, "kind": kind})


def tool_run(tool: str, seconds: float, *, failed: bool) -> None:
    meter = _meter()
    if meter is None:
        return
    meter.create_histogram_float("sessionflow_tool_duration", "Tool run time", "s").record(
        seconds, {"tool": tool, "failed": str(failed).lower()}
    )


def chunks_published(seconds: float, count: int) -> None:
    """One batched write of stream chunks to Redis and how long it took."""
    meter = _meter()
    if meter is None:
        return
    meter.create_histogram_float(
        "sessionflow_chunk_publish_latency", "Redis write time per batch of chunks", "s"
    ).record(seconds)
    meter.create_counter("sessionflow_chunks", "Stream chunks published").add(count)
