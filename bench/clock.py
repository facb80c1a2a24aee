"""A model that streams timestamps: each text delta is the nanosecond clock at emit time.

Used by the benchmarks to measure emit-to-receive latency through every layer. The
model name sets the pace: `clock/<tokens per second>x<tokens>`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from sessionflow.agents.definition import agent
from sessionflow.contract import FinishReason
from sessionflow.messages import Usage
from sessionflow.providers.base import ModelEvent, ModelRequest, StepFinished, TextDelta


class ClockProvider:
    name = "clock"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        rate, _, count = request.model.partition("x")
        interval = 1 / float(rate)
        started = time.monotonic()
        for i in range(int(count)):
            yield TextDelta(f"{time.time_ns()}|")
            # Pace against the start time so the rate holds under load.
            delay = started + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield StepFinished(reason=FinishReason.STOP, usage=Usage(output_tokens=int(count)))


def clock_agent(rate: int, tokens: int) -> object:
    return agent("clock", model=f"clock/{rate}x{tokens}")


def gateway_agent() -> object:
    """The clock agent as the gateway knows it (`--agents bench.clock:gateway_agent`):
    by name only, the pace is the worker's."""
    return clock_agent(1, 1)


def latencies_ms(texts: list[tuple[str, int]], not_before_ns: int) -> list[float]:
    """(delta text, receive time ns) pairs -> latencies of chunks emitted after the
    reader was attached (earlier ones were backlog, not live latency)."""
    out: list[float] = []
    for text, received in texts:
        for stamp in filter(None, text.split("|")):
            emitted = int(stamp)
            if emitted >= not_before_ns:
                out.append((received - emitted) / 1e6)
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


def split_at_xadd(entry_id: str, delta: str, received_ns: int) -> list[tuple[float, float]]:
    """(emit -> XADD, XADD -> receive) in ms for each token in a delta: the stream
    entry id's millisecond clock splits latency into the worker's side and the
    reader's."""
    written_ms = int(entry_id.split("-")[0])
    return [
        (written_ms - int(stamp) / 1e6, received_ns / 1e6 - written_ms)
        for stamp in filter(None, delta.split("|"))
    ]
