"""Per-step orchestration overhead: a Sessionflow turn of K tool steps (scripted model
at zero latency, a no-op tool) against the least a signal -> activities -> result loop
costs on the same Temporal server, in the same run. Prints one JSON line.

    python -m bench.overhead [--steps 5] [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.worker import Worker

from bench.baseline import BaselineLoop, noop
from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.logs import configure_logging
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.worker.build import WorkerOptions, build_worker


class Nothing(BaseModel):
    pass


async def _nothing(_: Nothing, ctx: ToolContext) -> str:
    return "ok"


def bench_agent(steps: int) -> Any:
    script = Script(
        name="overhead",
        delay=0,
        turns=[
            [
                *(ScriptStep(tool_calls=[ScriptedToolCall(tool="nothing")]) for _ in range(steps)),
                ScriptStep(text="done"),
            ]
        ],
    )
    return agent(
        "overhead",
        model=script,
        tools=[tool("nothing", "Does nothing", input_schema=Nothing, execute=_nothing)],
    )


async def main(steps: int, turns: int) -> dict[str, Any]:
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.on_free_ports(Path(tmp))
        async with LocalStack(config):
            temporal = await connect_temporal(config.temporal_address)
            redis = await connect_redis(config.redis_url)
            options = WorkerOptions(task_queue="overhead", sandbox_root=Path(tmp) / "sandboxes")
            sessionflow = build_worker(temporal, redis, [bench_agent(steps)], options)
            baseline = Worker(
                temporal, task_queue="baseline", workflows=[BaselineLoop], activities=[noop]
            )
            async with sessionflow, baseline:
                client = SessionClient(temporal, redis, task_queue="overhead")
                session = client.agent("overhead").session(f"overhead-{uuid.uuid4().hex[:6]}")
                await (await session.send("warm up")).done
                ours: list[float] = []
                for _ in range(turns):
                    started = time.perf_counter()
                    await (await session.send("go")).done
                    ours.append(time.perf_counter() - started)

                # The baseline runs as many activities as a Sessionflow turn schedules:
                # K+1 model steps and K tools.
                activities = 2 * steps + 1
                handle = await temporal.start_workflow(
                    BaselineLoop.run, id=f"baseline-{uuid.uuid4().hex[:6]}", task_queue="baseline"
                )
                await handle.signal(BaselineLoop.go, activities)
                await handle.execute_update(BaselineLoop.wait_round, 1)
                theirs: list[float] = []
                for n in range(2, turns + 2):
                    started = time.perf_counter()
                    await handle.signal(BaselineLoop.go, activities)
                    await handle.execute_update(BaselineLoop.wait_round, n)
                    theirs.append(time.perf_counter() - started)
                await handle.terminate()
            await redis.aclose()
    ours_ms, theirs_ms = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    return {
        "benchmark": "overhead",
        "tool_steps_per_turn": steps,
        "activities_per_turn": 2 * steps + 1,
        "turns": turns,
        "sessionflow_turn_median_ms": round(ours_ms, 1),
        "baseline_loop_median_ms": round(theirs_ms, 1),
        "sessionflow_per_step_ms": round(ours_ms / (2 * steps + 1), 1),
        "baseline_per_step_ms": round(theirs_ms / (2 * steps + 1), 1),
        "ratio": round(ours_ms / theirs_ms, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.steps, args.turns))), flush=True)
    os._exit(0)  # see sessionflow.cli._run
