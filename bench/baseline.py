"""The overhead benchmark's baseline: the least a turn of activities can cost.

A workflow that, per `go` signal, runs a given number of no-op activities one after
another and records that the round is done; a client waits with an update. Same
server, same worker process, same data converter as Sessionflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BaselineLoop")
class BaselineLoop:
    def __init__(self) -> None:
        self._pending: list[int] = []
        self._done = 0

    @workflow.run
    async def run(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._pending))
            activities = self._pending.pop(0)
            for step in range(activities):
                await workflow.execute_activity(
                    noop, step, start_to_close_timeout=timedelta(seconds=30)
                )
            self._done += 1

    @workflow.signal
    def go(self, activities: int) -> None:
        self._pending.append(activities)

    @workflow.update
    async def wait_round(self, round_number: int) -> int:
        await workflow.wait_condition(lambda: self._done >= round_number)
        return self._done
