"""One Temporal dev server and one Redis-protocol server for the whole test session (per
test process: `pytest -n 2` runs two, each with its own), and for the fast workflow
harness one time-skipping test server (started on first use).

Each test gets its own task queue and worker, so tests cannot see each other's
sessions, while paying the servers' start-up cost once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sessionflow.agents.definition import Agent
from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import SessionLimits
from sessionflow.storage import external_storage_from_settings
from sessionflow.worker.build import WorkerOptions, build_worker
from tests.workflow_harness import Harness, TestServer, open_harness

# moto's S3 server and a bucket per test, for the S3 payload store's tests.
pytest_plugins = ["tests.s3_fixtures"]

StartWorker = Callable[..., Awaitable[SessionClient]]
# The in-process workers of the running test, so a test can stop and replace them.
RUNNING_WORKERS: list[tuple[Worker, asyncio.Task[None]]] = []


@pytest.fixture(autouse=True)
def unmount_workspace_disks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Unmount the workspace disks (`sandbox.disk`) a test left under the test
    session's temporary directory: a worker keeps a sandbox's disk mounted for as long
    as the sandbox lives, and a test's sandboxes are never killed."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(base + os.sep)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# The Worker Deployment of this test process's workers, one build shared by every test's
# task queue. A deployment per test left hundreds of deployment workflows on the server
# (the suite ran about 12% slower); a test that makes another build current, which would
# move every task queue of the deployment, builds its workers in a deployment of its own.
TEST_DEPLOYMENT = f"tests-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory: pytest.TempPathFactory) -> StackConfig:
    return StackConfig.on_free_ports(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
async def stack(stack_config: StackConfig) -> AsyncIterator[LocalStack]:
    async with LocalStack(stack_config) as running:
        yield running


@pytest.fixture(scope="session")
async def temporal(stack: LocalStack) -> Client:
    """A client (and, through `start_worker`, the workers) whose large payloads go to the
    stack's payload store, `<stack data dir>/payloads`."""
    settings = stack.config.point(Settings())
    return await connect_temporal(
        settings.temporal_address, external_storage=external_storage_from_settings(settings)
    )


@pytest.fixture
async def redis(stack: LocalStack) -> AsyncIterator[Redis]:
    client = await connect_redis(stack.config.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sandbox_root(tmp_path: Path) -> Path:
    return tmp_path / "sandboxes"


@pytest.fixture
async def start_worker(
    temporal: Client, redis: Redis, task_queue: str, sandbox_root: Path
) -> AsyncIterator[StartWorker]:
    """Start an in-process worker serving `agents`; returns a client bound to its queue."""
    running = RUNNING_WORKERS

    async def start(
        agents: Sequence[Agent], *, limits: SessionLimits | None = None, **options: object
    ) -> SessionClient:
        worker = build_worker(
            temporal,
            redis,
            agents,
            WorkerOptions(
                task_queue=task_queue,
                deployment=TEST_DEPLOYMENT,
                sandbox_root=sandbox_root,
                **options,  # type: ignore[arg-type]
            ),
        )
        running.append((worker, asyncio.create_task(worker.run())))
        return SessionClient(temporal, redis, task_queue=task_queue, limits=limits)

    yield start
    for worker, task in running:
        await worker.shutdown()
        await task
    running.clear()


@pytest.fixture
def unique_id() -> Iterator[str]:
    yield f"s-{uuid.uuid4().hex[:10]}"


@dataclass
class Gateway:
    url: str
    client: SessionClient
    keys: dict[str, str]

    def headers(self, tenant: str = "acme") -> dict[str, str]:
        key = next(k for k, t in self.keys.items() if t == tenant)
        return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def gateway(start_worker: StartWorker) -> AsyncIterator[Gateway]:
    """The HTTP gateway on a free port, in front of a worker serving the test agents."""
    from sessionflow.gateway.app import create_app
    from sessionflow.gateway.config import GatewayConfig
    from tests.agents import GATEWAY_AGENTS
    from tests.serving import serving

    client = await start_worker(GATEWAY_AGENTS)
    keys = {"key-for-acme-0001": "acme", "key-for-globex-02": "globex"}
    config = GatewayConfig(
        api_keys=keys, default_agent="tooling", heartbeat_seconds=0.3, max_body_bytes=64 * 1024
    )
    async with serving(create_app(client, config)) as url:
        yield Gateway(url=url, client=client, keys=keys)


# -- the fast workflow harness (tests/workflow_harness.py) ---------------------------------


@pytest.fixture(scope="session")
async def workflow_server() -> AsyncIterator[TestServer]:
    """Temporal's time-skipping test server, one per test process, started on first use."""
    server = TestServer()
    yield server
    await server.shutdown()


@pytest.fixture
async def workflow_env(workflow_server: TestServer) -> AsyncIterator[WorkflowEnvironment]:
    """The test server, checked after the test: a stuck clock gets the next test a new one."""
    yield await workflow_server.env()
    await workflow_server.check_clock()


@pytest.fixture
async def harness(workflow_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """The real SessionWorkflow on a task queue of its own, its activities scripted fakes."""
    async with open_harness(workflow_env) as running:
        yield running
