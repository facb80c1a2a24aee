"""Records the histories the replay tests check the workflow code against.

    python -m tests.histories.record [name ...]

Starts its own stack, runs representative sessions (a plain turn, tools, an approval,
an interrupt, continue-as-new) and writes each workflow history as JSON beside this
file (only the named ones, if names are given). Re-record only on purpose: a change that breaks replay of these histories
would break sessions running in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import SessionLimits
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import approval_agent, counter_agent, streaming_agent, tool_agent

HERE = Path(__file__).parent


async def record(wanted: set[str]) -> None:
    def write(name: str, history: str) -> None:
        if not wanted or name in wanted:
            (HERE / f"{name}.json").write_text(history)

    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.on_free_ports(Path(tmp))
        async with LocalStack(config):
            payloads = external_storage_from_settings(Settings(data_dir=Path(tmp) / "data"))
            temporal = await connect_temporal(config.temporal_address, external_storage=payloads)
            redis = await connect_redis(config.redis_url)
            agents = [tool_agent, approval_agent, streaming_agent, counter_agent]
            options = WorkerOptions(task_queue="record", sandbox_root=Path(tmp) / "sandboxes")
            async with build_worker(temporal, redis, agents, options):
                client = SessionClient(temporal, redis, task_queue="record")
                small = SessionClient(
                    temporal, redis, task_queue="record",
                    limits=SessionLimits(continue_as_new_after_events=25),
                )  # fmt: skip

                tools = client.session("tools", agent="tooling")
                await (await tools.send("make a file and read it")).done
                await (await tools.send("and a plain turn")).done

                approval = client.session("approval", agent="approver")
                waiting = await approval.send("run it")
                async for event in waiting.stream():
                    if event.type == "tool-approval-request":
                        approval_id = event.chunk.approval_id  # type: ignore[attr-defined]
                        break
                await approval.send(
                    {"type": "approval", "approval": {"approval_id": approval_id, "approved": True}}
                )
                await waiting.done

                interrupted = client.session("interrupt", agent="streamer")
                long = await interrupted.send("long")
                async for event in long.stream():
                    if event.type == "text-delta":
                        await interrupted.interrupt()
                        break
                await long.done
                await (await interrupted.send("short")).done

                counter = small.session("continue-as-new", agent="counter")
                for i in range(3):
                    await (await counter.send(f"count {i}")).done

                # Every step commits to the transcript store; then a rewind into it.
                committing = SessionClient(
                    temporal, redis, task_queue="record",
                    limits=SessionLimits(commit_transcript_after_bytes=0),
                )  # fmt: skip
                transcript = committing.session("transcript", agent="tooling")
                await (await transcript.send("make a file and read it")).done
                await (await transcript.send("and a plain turn")).done
                first_answer = (await transcript.history())[1].id
                await transcript.update(last_message_id=first_answer)
                await (await transcript.send("after the rewind")).done

                # Runs since `fewer-commands-per-turn`: tool turns without upserts per
                # tool, and one idle timer kept across turns, set again when it fires
                # early, then pausing the sandbox.
                pausing = SessionClient(
                    temporal, redis, task_queue="record",
                    limits=SessionLimits(pause_sandbox_after_seconds=1.5),
                )  # fmt: skip
                fewer = pausing.session("fewer-commands", agent="tooling")
                await (await fewer.send("make a file and read it")).done
                await asyncio.sleep(1.0)
                await (await fewer.send("and a plain turn")).done
                await asyncio.sleep(3.0)

                for name, session in (
                    ("tools", tools), ("approval", approval), ("interrupt", interrupted),
                    ("transcript", transcript), ("fewer-commands", fewer),
                ):  # fmt: skip
                    history = await temporal.get_workflow_handle(
                        session.workflow_id
                    ).fetch_history()
                    write(name, history.to_json())
                runs = [
                    w
                    async for w in temporal.list_workflows(f'WorkflowId = "{counter.workflow_id}"')
                ]
                for n, run in enumerate(sorted(runs, key=lambda r: r.start_time)[:2]):
                    handle = temporal.get_workflow_handle(counter.workflow_id, run_id=run.run_id)
                    history = await handle.fetch_history()
                    write(f"continue-as-new-run{n + 1}", history.to_json())
            await redis.aclose()
    print(json.dumps(sorted(p.name for p in HERE.glob("*.json"))))


if __name__ == "__main__":
    asyncio.run(record(set(sys.argv[1:])))
    os._exit(0)  # see sessionflow.cli._run
