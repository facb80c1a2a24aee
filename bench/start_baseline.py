"""The concurrency benchmark's baseline: how fast raw Temporal starts a burst of work.

A minimal workflow started by signal-with-start: the signal handler queues the
message, the run loop takes it and runs one activity, which records when it started.
Nothing else: no search attributes, no patches, no local activities. Served by its own
worker process (the SDK's defaults, the sandboxed runner, the same data converter as
Sessionflow), so the benchmark can measure send -> first activity start on the same
server as the sessions, in the same run. With BENCH_POLLERS=autoscaling its workflow
task pollers scale as Sessionflow's do (`worker/build.py`), instead of the SDK's fixed
five (of which one polls for new workflows' first tasks).

    python -m bench.start_baseline   # the worker; TEMPORAL_ADDRESS, BENCH_POLLERS
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "bench-start-baseline"
SIGNAL = "send"


@activity.defn(name="bench.record_start")
async def record_start(message: str) -> int:
    """The wall clock (ns) when the activity started: the end of a start burst."""
    return time.time_ns()


@workflow.defn(name="StartBaseline")
class StartBaseline:
    def __init__(self) -> None:
        self._inbox: list[str] = []

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: bool(self._inbox))
        message = self._inbox.pop(0)
        started: int = await workflow.execute_activity(
            record_start, message, start_to_close_timeout=timedelta(seconds=60)
        )
        return started

    @workflow.signal(name=SIGNAL)
    def send(self, message: str) -> None:
        self._inbox.append(message)


async def main() -> None:
    from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, Worker

    from sessionflow.connections import connect_temporal
    from sessionflow.worker.main import stop_on_signals

    client = await connect_temporal(os.environ["TEMPORAL_ADDRESS"])
    stop = stop_on_signals()
    autoscaling = os.environ.get("BENCH_POLLERS") == "autoscaling"
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[StartBaseline],
        activities=[record_start],
        workflow_task_poller_behavior=(
            PollerBehaviorAutoscaling() if autoscaling else PollerBehaviorSimpleMaximum(5)
        ),
    ):
        print("worker started", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # see sessionflow.cli._run: no finalization race with Temporal's runtime
