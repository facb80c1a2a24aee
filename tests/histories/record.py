"""Records the histories the replay gate checks the workflow code against.

    python -m tests.histories.record [name ...]

Starts its own stack and a versioned worker, runs one session of every shape
(`SHAPES`: a plain turn, tools, an approval answered and one still waiting, an
interrupt, a cancel request, transcript commits and a rewind, continue-as-new, an
idle sandbox paused, a close, an idle TTL, a delete, a rollback, a fork and its first
turn, webhooks) and writes each workflow history as JSON beside this file
(only the named ones, if names are given).

Re-record when the workflow code changes on purpose: sessions are pinned to the build
they started on (Worker Versioning), so a history only has to replay on the code that
recorded it, and `sessionflow replay-check` (tests/test_replay.py) proves that the
code at hand still replays what it records. Histories recorded by the patch-era code
(with `workflow.patched` markers) do not replay on code without those patches; pinned
builds are what make dropping them safe.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.client.session import SendResult, Session
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import SessionLimits
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import approval_agent, counter_agent, streaming_agent, tool_agent

HERE = Path(__file__).parent

# Every shape of session the gate replays, by history file name (without `.json`).
SHAPES = (
    "plain",
    "tools",
    "approval",
    "approval-waiting",
    "interrupt",
    "cancel",
    "transcript",
    "continue-as-new-run1",
    "continue-as-new-run2",
    "idle-pause",
    "close",
    "idle-ttl",
    "delete",
    "rollback",
    "fork",
    "fork-child",
    "webhooks",
)


async def _approval_id(result: SendResult) -> str:
    async for event in result.stream():
        if event.type == "tool-approval-request":
            approval_id: str = event.chunk.approval_id  # type: ignore[attr-defined]
            return approval_id
    raise AssertionError("no approval was asked for")


async def _history(temporal: Client, workflow_id: str, run_id: str | None = None) -> str:
    history = await temporal.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return history.to_json()


async def record_sessions(
    temporal: Client, redis: Redis, queue: str, prefix: str = ""
) -> dict[str, str]:
    """Run a session of every shape on the worker serving the test agents (`tooling`,
    `approver`, `streamer`, `counter`) on base queue `queue`, each session id starting
    with `prefix`; their histories by name."""

    def limited(**limits: Any) -> SessionClient:
        return SessionClient(temporal, redis, task_queue=queue, limits=SessionLimits(**limits))

    client = SessionClient(temporal, redis, task_queue=queue)

    histories: dict[str, str] = {}

    # Every shape is a session of its own: they run side by side.
    async def plain() -> Session:
        session = client.agent("streamer").session(f"{prefix}plain")
        await (await session.send("hello")).done
        await (await session.send("again")).done
        return session

    async def tools() -> Session:
        session = client.agent("tooling").session(f"{prefix}tools")
        await (await session.send("make a file and read it")).done
        await (await session.send("and a plain turn")).done
        return session

    async def approval() -> Session:
        session = client.agent("approver").session(f"{prefix}approval")
        answered = await session.send("run it")
        await session.approve({"approval_id": await _approval_id(answered), "approved": True})
        await answered.done
        return session

    async def approval_waiting() -> Session:
        session = client.agent("approver").session(f"{prefix}approval-waiting")
        await _approval_id(await session.send("run it"))
        return session

    async def interrupt() -> Session:
        session = client.agent("streamer").session(f"{prefix}interrupt")
        long = await session.send("long")
        async for event in long.stream():
            if event.type == "text-delta":
                await session.interrupt()
                break
        await long.done
        await (await session.send("short")).done
        return session

    async def cancel() -> Session:
        # A cancel request from the Temporal UI mid-answer: an interrupt, then the run
        # continues as new (its history, the one with the request, is the shape).
        session = client.agent("streamer").session(f"{prefix}cancel")
        cut = await session.send("long")
        async for event in cut.stream():
            if event.type == "text-delta":
                await temporal.get_workflow_handle(session.workflow_id).cancel()
                break
        await cut.done
        await (await session.send("short")).done
        return session

    async def transcript() -> Session:
        # Every step commits to the transcript store; then a rewind into it.
        committing = limited(commit_transcript_after_bytes=0).agent("tooling")
        session = committing.session(f"{prefix}transcript")
        await (await session.send("make a file and read it")).done
        await (await session.send("and a plain turn")).done
        first_answer = (await session.history())[1].id
        await session.update(last_message_id=first_answer)
        await (await session.send("after the rewind")).done
        return session

    async def rollback() -> Session:
        # A send with if_busy="rollback" takes out the turn that waits for an approval.
        session = client.agent("approver").session(f"{prefix}rollback")
        replaced = await session.send("run it")
        await _approval_id(replaced)
        instead = await session.send("instead", if_busy="rollback")
        await replaced.done
        await _approval_id(instead)
        return session

    async def fork() -> tuple[Session, Session]:
        # A fork in the middle of a committed transcript, and the fork's first turn.
        committing = limited(commit_transcript_after_bytes=0).agent("tooling")
        parent = committing.session(f"{prefix}fork")
        await (await parent.send("make a file and read it")).done
        await (await parent.send("and a plain turn")).done
        child = await parent.fork(
            f"{prefix}fork-child", at_message_id=(await parent.history())[1].id
        )
        await (await child.send("in the fork")).done
        return parent, child

    async def continue_as_new() -> Session:
        # Its tool is plain Python (no `sandbox=True`): the session never makes a sandbox.
        continuing = limited(continue_as_new_after_events=25).agent("counter")
        session = continuing.session(f"{prefix}continue-as-new")
        for i in range(3):
            await (await session.send(f"count {i}")).done
        return session

    async def idle_pause() -> Session:
        # One idle timer kept across turns, set again when it fires early, then pausing
        # the sandbox.
        pausing = limited(pause_sandbox_after_seconds=1.5).agent("tooling")
        session = pausing.session(f"{prefix}idle-pause")
        await (await session.send("make a file and read it")).done
        await asyncio.sleep(1.0)
        await (await session.send("and a plain turn")).done
        await asyncio.sleep(3.0)
        return session

    async def close() -> Session:
        session = client.agent("tooling").session(f"{prefix}close")
        await (await session.send("make a file and read it")).done
        await session.close()
        return session

    async def idle_ttl() -> Session:
        expiring = limited(close_after_idle_seconds=2).agent("tooling")
        session = expiring.session(f"{prefix}idle-ttl")
        await (await session.send("make a file and read it")).done
        await asyncio.wait_for(temporal.get_workflow_handle(session.workflow_id).result(), 30)
        return session

    async def webhooks() -> Session:
        # A session with a webhook URL: each event (an approval asked for, the turn's
        # end, the close) starts an abandoned delivery workflow; refused at once here
        # (the worker has no webhook secret), so nothing is sent anywhere.
        session = client.agent("approver").session(f"{prefix}webhooks")
        asked = await session.send("run it", webhook_url="http://127.0.0.1:9/hook")
        await session.approve({"approval_id": await _approval_id(asked), "approved": False})
        await asked.done
        await session.close()
        return session

    async def delete() -> None:
        # The delete update erases and completes the run; the client would then delete
        # the runs from Temporal, so its history is read first, and the session deleted
        # after.
        session = client.agent("tooling").session(f"{prefix}delete")
        await (await session.send("make a file and read it")).done
        await temporal.get_workflow_handle(session.workflow_id).execute_update("delete")
        histories["delete"] = await _history(temporal, session.workflow_id)
        await session.delete()

    (
        plain_s, tools_s, approval_s, waiting_s, interrupted, cancelled, transcript_s,
        rolled, (parent, child), counter, idle, closed, expiring, hooked, _,
    ) = await asyncio.gather(
        plain(), tools(), approval(), approval_waiting(), interrupt(), cancel(),
        transcript(), rollback(), fork(), continue_as_new(), idle_pause(), close(),
        idle_ttl(), webhooks(), delete(),
    )  # fmt: skip

    for name, session in (
        ("plain", plain_s), ("tools", tools_s), ("approval", approval_s),
        ("approval-waiting", waiting_s), ("interrupt", interrupted),
        ("transcript", transcript_s), ("idle-pause", idle), ("close", closed),
        ("idle-ttl", expiring), ("rollback", rolled), ("fork", parent),
        ("fork-child", child), ("webhooks", hooked),
    ):  # fmt: skip
        histories[name] = await _history(temporal, session.workflow_id)
    runs = [w async for w in temporal.list_workflows(f'WorkflowId = "{counter.workflow_id}"')]
    for n, run in enumerate(sorted(runs, key=lambda r: r.start_time)[:2]):
        histories[f"continue-as-new-run{n + 1}"] = await _history(
            temporal, counter.workflow_id, run.run_id
        )
    runs = [w async for w in temporal.list_workflows(f'WorkflowId = "{cancelled.workflow_id}"')]
    first = min(runs, key=lambda r: r.start_time)
    histories["cancel"] = await _history(temporal, cancelled.workflow_id, first.run_id)
    assert set(histories) == set(SHAPES), sorted(histories)
    return histories


def _unmount_under(base: Path) -> None:
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(f"{base}{os.sep}")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


async def record(wanted: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.on_free_ports(Path(tmp))
        async with LocalStack(config):
            payloads = external_storage_from_settings(Settings(data_dir=Path(tmp) / "data"))
            temporal = await connect_temporal(config.temporal_address, external_storage=payloads)
            redis = await connect_redis(config.redis_url)
            agents = [tool_agent, approval_agent, streaming_agent, counter_agent]
            options = WorkerOptions(task_queue="record", sandbox_root=Path(tmp) / "sandboxes")
            async with build_worker(temporal, redis, agents, options) as worker:
                await worker.claimed()
                histories = await record_sessions(temporal, redis, "record")
            await redis.aclose()
        _unmount_under(Path(tmp))  # the workspace disks of sandboxes left alive
    for name, history in histories.items():
        if not wanted or name in wanted:
            (HERE / f"{name}.json").write_text(history)
    print(json.dumps(sorted(p.name for p in HERE.glob("*.json"))))


if __name__ == "__main__":
    asyncio.run(record(set(sys.argv[1:])))
    os._exit(0)  # see sessionflow.cli._run
