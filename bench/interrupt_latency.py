"""Interrupt latency: how long from an interrupt to the end of the step it stops, with
interrupt notices (steps heartbeat every 2 s and are told through Redis) and without
them (steps heartbeat every 0.4 s, the cancel arrives on a heartbeat's answer).

Measured by the Temporal server's own clock, from the interrupt signal's event to the
model step's closing event in the session's history, so neither the client's nor the
worker's scheduling is counted twice. The two modes run one after the other on one
stack, each on a worker process of its own; `--order off,on` swaps them. Prints one
JSON line.

    python -m bench.interrupt_latency [--interrupts 20] [--order on,off]

This is a benchmark, not a test: the suite checks that an interrupt is announced and
lands (`tests/test_interrupt_notices.py`), and these figures how fast, on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType

from bench.harness import BenchStack, bench_stack, stop_worker
from sessionflow.contract import TurnStatus

# A long answer: every session is still streaming when it is interrupted.
RATE, TOKENS = 50, 2000
_STEP_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
}


async def one_interrupt(stack: BenchStack) -> float:
    """Interrupt one streaming answer; seconds from the signal to the step's end."""
    session = stack.client.agent("clock").session(f"bench-{uuid.uuid4().hex[:10]}")
    result = await session.send("talk")
    async for event in result.stream():
        if event.type == "text-delta":
            break
    await session.interrupt()
    outcome = await result.outcome
    assert outcome.status is TurnStatus.INTERRUPTED, outcome
    handle = stack.client.temporal.get_workflow_handle(session.workflow_id)
    events = [e async for e in handle.fetch_history_events()]
    signalled = max(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    ended = next(e for e in events[signalled:] if e.event_type in _STEP_ENDS)
    return (ended.event_time.ToNanoseconds() - events[signalled].event_time.ToNanoseconds()) / 1e9


async def one_mode(stack: BenchStack, notices: bool, interrupts: int) -> dict[str, float]:
    worker = await stack.start_worker(
        RATE, TOKENS, SESSIONFLOW_INTERRUPT_NOTICES="on" if notices else "off"
    )
    try:
        await one_interrupt(stack)  # warm-up: the first run pays for imports and caches
        took = [await one_interrupt(stack) for _ in range(interrupts)]
    finally:
        await stop_worker(worker)
        stack.workers.remove(worker)
    took.sort()
    return {
        "p50_s": round(statistics.median(took), 3),
        "p95_s": round(took[max(0, round(0.95 * len(took)) - 1)], 3),
        "max_s": round(took[-1], 3),
    }


async def main(interrupts: int, order: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {"benchmark": "interrupt_latency", "interrupts": interrupts}
    async with bench_stack() as stack:
        for mode in order:
            figures[f"notices_{mode}"] = await one_mode(stack, mode == "on", interrupts)
            print(f"# notices {mode}: {figures[f'notices_{mode}']}", file=sys.stderr, flush=True)
    on, off = figures["notices_on"], figures["notices_off"]
    figures["p50_on_over_off"] = round(on["p50_s"] / off["p50_s"], 2)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interrupts", type=int, default=20)
    parser.add_argument("--order", default="on,off")
    args = parser.parse_args()
    order = args.order.split(",")
    assert sorted(order) == ["off", "on"], "--order is on,off or off,on"
    print(json.dumps(asyncio.run(main(args.interrupts, order))))
