"""Deploy any day (issue 25): sessions are pinned to the build they started on.

A session waits for an approval on build A; build B, whose workflow code would break
A's history (it ensures the sandbox before each turn: one more activity call), becomes
current; the waiting session is approved and finishes on A, its history intact; a new
session runs on B; nothing fails non-deterministically; A drains once its session
closes, and its workers stop. Workers are in-process, against the real dev server, in
a deployment of the test's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker

from sessionflow.cli.deploying import run_deploy
from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.config import ConfigError, Settings
from sessionflow.contract import (
    ActivityName,
    TurnStatus,
)
from sessionflow.worker import versions
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.agents import approval_agent
from tests.other_builds import build_running, replay_failure, scheduled, task_failures
from tests.workflow_variants import LegacyRelease, SandboxFirstSession

REPO = Path(__file__).resolve().parent.parent


async def events_of(temporal: Client, workflow_id: str) -> list[HistoryEvent]:
    return [e async for e in temporal.get_workflow_handle(workflow_id).fetch_history_events()]


async def build_of(temporal: Client, workflow_id: str) -> str:
    described = await temporal.get_workflow_handle(workflow_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.PINNED.value
    return info.deployment_version.build_id


async def test_a_waiting_session_finishes_on_its_build_while_new_ones_start_on_the_next(
    stack: LocalStack,
    temporal: Client,
    redis: Redis,
    task_queue: str,
    tmp_path: Path,
    unique_id: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployment = task_queue
    options = WorkerOptions(
        task_queue=task_queue, deployment=deployment, sandbox_root=tmp_path / "sandboxes"
    )
    settings = stack.config.point(Settings()).model_copy(update={"deployment": deployment})
    client = SessionClient(temporal, redis, task_queue=task_queue)
    build_a = build_worker(
        temporal, redis, [approval_agent], dataclasses.replace(options, build_id="A")
    )
    async with build_a:
        # A fresh deployment: its first build becomes current by itself.
        assert await build_a.claimed() is True

        waiting = client.agent("approver").session(f"{unique_id}-old")
        asked = await waiting.send("run it")
        approval_id = None
        async for event in asked.stream():
            if event.type == "tool-approval-request":
                approval_id = event.chunk.approval_id  # type: ignore[attr-defined]
                break
        assert approval_id is not None

        # Build B, with a workflow change that does not replay A's history.
        build_b = build_running(
            SandboxFirstSession,
            temporal,
            redis,
            [approval_agent],
            dataclasses.replace(options, build_id="B", make_current="never"),
        )
        failure = await replay_failure(temporal, waiting.workflow_id, SandboxFirstSession)
        assert "Nondeterminism" in failure

        async with build_b:
            # A build that is not current is seen polling (readiness of versioned workers).
            await build_b.wait_polling(30)
            assert await build_b.claimed() is False
            await run_deploy(settings, build_id="B", ramp=None, wait_drained=False, timeout=None)
            shown = capsys.readouterr().out
            assert "Build B is current" in shown
            assert "Current     B" in shown

            await waiting.approve({"approval_id": approval_id, "approved": True})
            outcome = await asyncio.wait_for(asked.outcome, 30)
            assert outcome.status is TurnStatus.FINISHED
            assert await build_of(temporal, waiting.workflow_id) == "A"

            fresh = client.agent("approver").session(f"{unique_id}-new")
            started = await fresh.send("run it")
            async for event in started.stream():
                if event.type == "tool-approval-request":
                    await fresh.approve(
                        {"approval_id": event.chunk.approval_id, "approved": True}  # type: ignore[attr-defined]
                    )
                    break
            assert (await asyncio.wait_for(started.outcome, 30)).status is TurnStatus.FINISHED
            assert await build_of(temporal, fresh.workflow_id) == "B"

            old_events = await events_of(temporal, waiting.workflow_id)
            new_events = await events_of(temporal, fresh.workflow_id)
            # A's order: the model step, then (after the approval) the sandbox and the tool.
            assert scheduled(old_events)[:2] == [
                ActivityName.MODEL_STEP.value,
                ActivityName.ENSURE_SANDBOX.value,
            ]
            # B's order: the sandbox first.
            assert scheduled(new_events)[0] == ActivityName.ENSURE_SANDBOX.value
            assert task_failures(old_events) == task_failures(new_events) == []

            # The old session ends; A drains, and its workers may stop.
            await waiting.close()
            await run_deploy(settings, build_id=None, ramp=None, wait_drained=True, timeout=20)
            shown = capsys.readouterr().out
            assert "Drained, their workers may stop: A" in shown
            state = await versions.describe(temporal, deployment)
            assert state is not None
            assert state.build("A") is not None and state.build("A").status == "drained"  # type: ignore[union-attr]
            assert state.current == "B"
            await build_a.shutdown()
            # B alone serves on: the new session still answers.
            again = await fresh.send("again")
            async for event in again.stream():
                if event.type == "tool-approval-request":
                    await fresh.approve(
                        {"approval_id": event.chunk.approval_id, "approved": True}  # type: ignore[attr-defined]
                    )
                    break
            assert (await asyncio.wait_for(again.outcome, 30)).status is TurnStatus.FINISHED


def test_the_build_id_is_the_version_and_a_hash_of_the_source(tmp_path: Path) -> None:
    build = versions.default_build_id()
    version, _, digest = build.rpartition("-")
    assert version and len(digest) == 12 and build == versions.default_build_id()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    first = versions.source_hash([package])
    assert versions.source_hash([package]) == first  # stable for identical code
    (package / "a.py").write_text("x = 2\n")
    assert versions.source_hash([package]) != first
    # Every installed package is hashed (nested ones within their parent's folder).
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {p for p in listed if p.count(".") <= 1} == set(versions.PACKAGES)


def test_the_deployment_and_build_come_from_the_environment() -> None:
    assert Settings.from_env({}).deployment == "sessionflow"
    assert Settings.from_env({}).build_id is None
    env = {"SESSIONFLOW_DEPLOYMENT": "agents-eu", "SESSIONFLOW_BUILD_ID": "2026.12.07+abc"}
    settings = Settings.from_env(env)
    assert (settings.deployment, settings.build_id) == ("agents-eu", "2026.12.07+abc")
    # Temporal names a version <deployment>.<build id>: no '.' in the deployment.
    with pytest.raises(ConfigError, match="SESSIONFLOW_DEPLOYMENT must be 1-100 letters"):
        Settings.from_env({"SESSIONFLOW_DEPLOYMENT": "my.app"})
    with pytest.raises(ConfigError, match="SESSIONFLOW_BUILD_ID must be"):
        Settings.from_env({"SESSIONFLOW_BUILD_ID": "two words"})


async def test_a_first_build_leaves_sessions_of_unversioned_workers_where_they_run(
    temporal: Client, redis: Redis, task_queue: str, tmp_path: Path
) -> None:
    """Runs of an unversioned worker (an earlier release) would move to the first
    current build and replay there: while one polls, the build does not claim."""
    queue = f"{task_queue}.approver"
    legacy = Worker(temporal, task_queue=queue, workflows=[LegacyRelease], identity="legacy")
    async with legacy:
        async with asyncio.timeout(30):
            while "legacy" not in await versions.unversioned_pollers(temporal, queue):
                await asyncio.sleep(0.1)
        options = WorkerOptions(
            task_queue=task_queue, deployment=task_queue, sandbox_root=tmp_path / "sandboxes"
        )
        async with build_worker(temporal, redis, [approval_agent], options) as worker:
            await worker.wait_polling(30)
            assert await worker.claimed() is False
            state = await versions.describe(temporal, task_queue)
            assert state is None or state.current is None
            assert "legacy" not in await versions.unversioned_pollers(
                temporal, f"{task_queue}.nobody"
            )


async def test_claiming_the_current_build_rides_out_a_server_that_cannot_answer_for_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy dev server cancelled the first claim ("operation was canceled") and the
    worker gave up, serving nothing new: a transient refusal is asked again; a refusal
    that is not transient is raised at once."""
    from temporalio.service import RPCError, RPCStatusCode

    from sessionflow.worker import versions

    answers: list[BaseException | None] = [
        RPCError("operation was canceled", RPCStatusCode.CANCELLED, b""),
        RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""),
        None,
    ]
    calls: list[str] = []

    async def describe(client: object, deployment: str) -> None:
        return None  # no build current yet

    async def set_current(client: object, deployment: str, build_id: str, **_: object) -> None:
        calls.append(build_id)
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    monkeypatch.setattr(versions, "describe", describe)
    monkeypatch.setattr(versions, "set_current", set_current)
    version = WorkerDeploymentVersion(deployment_name="d", build_id="b1")
    assert await versions.claim_current(None, version, patience=30) is True  # type: ignore[arg-type]
    assert calls == ["b1", "b1", "b1"]

    answers[:] = [RPCError("no", RPCStatusCode.PERMISSION_DENIED, b"")]
    with pytest.raises(RPCError):
        await versions.claim_current(None, version, patience=30)  # type: ignore[arg-type]
    answers[:] = [RPCError("busy", RPCStatusCode.CANCELLED, b"")] * 10
    with pytest.raises(RPCError):
        await versions.claim_current(None, version, patience=0)  # type: ignore[arg-type]


async def test_describing_the_deployment_asks_a_busy_server_again() -> None:
    from types import SimpleNamespace

    from temporalio.service import RPCError, RPCStatusCode

    from sessionflow.worker import versions

    answers = [
        RPCError("operation was canceled", RPCStatusCode.CANCELLED, b""),
        RPCError("no such deployment", RPCStatusCode.NOT_FOUND, b""),
    ]
    asked: list[object] = []

    async def describe_worker_deployment(request: object) -> None:
        asked.append(request)
        raise answers.pop(0)

    client = SimpleNamespace(
        namespace="default",
        workflow_service=SimpleNamespace(describe_worker_deployment=describe_worker_deployment),
    )
    assert await versions.describe(client, "d") is None  # type: ignore[arg-type]
    assert len(asked) == 2
