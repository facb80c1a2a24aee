"""Worker Versioning: which build a worker is, and the deployment's routing between builds.

Every worker joins a Temporal Worker Deployment (`SESSIONFLOW_DEPLOYMENT`) as one
build (`SESSIONFLOW_BUILD_ID`, by default the package's version and a hash of its
source files). `SessionWorkflow` is pinned: a session runs every workflow task on the
build it started on, however many builds are deployed since, and new sessions start on
the deployment's *current* build (or, for a share of them, its *ramping* one). So a
change to the workflow code never meets a history recorded by other code; old builds
keep serving their sessions until those end (the build is *drained*), and are stopped
then.

The first build a deployment sees becomes current by itself (`claim_current`), so a
first run needs no step; after that, the operator moves the current build
(`sessionflow deploy`, or `temporal worker deployment set-current-version`).

Runs started on unversioned workers (before versioning) move to the current build as
soon as their task queue has one, and would replay their histories on code that did
not record them: so a first build does not make itself current while unversioned
workers still poll its task queues (see the README, "Upgrading to versioned workers").
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.deployment.v1 import RoutingConfig
from temporalio.api.enums.v1 import (
    TaskQueueType,
    WorkerDeploymentVersionStatus,
    WorkerVersioningMode,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

# The installed package and its subpackages (pyproject's `packages`): their source is
# the build. `tests/test_versioning.py` checks the list against pyproject.
PACKAGES = (
    "sessionflow",
    "sessionflow.workflows",
    "sessionflow.activities",
    "sessionflow.agents",
    "sessionflow.providers",
    "sessionflow.sandbox",
    "sessionflow.streams",
    "sessionflow.storage",
    "sessionflow.client",
    "sessionflow.worker",
    "sessionflow.gateway",
    "sessionflow.cli",
)

_build_id: str | None = None


def source_hash(folders: Iterable[Path]) -> str:
    """A short hash of the `.py` files under `folders`, by path and content: the same
    for the same code wherever it is installed."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:12]


def _package_folders() -> list[Path]:
    folders: list[Path] = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders.extend(Path(p) for p in spec.submodule_search_locations)
    # Subpackages nested in another's folder (an installed wheel) are hashed once.
    return [f for f in folders if not any(o != f and o in f.parents for o in folders)]


def default_build_id() -> str:
    """`<package version>-<source hash>`, computed once per process."""
    global _build_id
    if _build_id is None:
        version = importlib.metadata.version("sessionflow")
        _build_id = f"{version}-{source_hash(_package_folders())}"
    return _build_id


def deployment_version(deployment: str, build_id: str | None = None) -> WorkerDeploymentVersion:
    """The version a worker of this code is in `deployment` (`build_id` if given)."""
    return WorkerDeploymentVersion(deployment, build_id or default_build_id())


# -- a deployment's routing -------------------------------------------------------------


_STATUS = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "inactive",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED: "created",
}


@dataclass(frozen=True)
class BuildState:
    """One build of a deployment: `status` is current, ramping, draining (pinned
    sessions still run on it), drained (none do: its workers may stop), inactive (never
    current or ramping) or created."""

    build_id: str
    status: str
    created: str


@dataclass(frozen=True)
class DeploymentState:
    name: str
    current: str | None
    ramping: str | None
    ramp_percentage: float
    builds: list[BuildState]
    conflict_token: bytes

    def build(self, build_id: str) -> BuildState | None:
        return next((b for b in self.builds if b.build_id == build_id), None)


def _current(routing: RoutingConfig) -> str | None:
    if routing.HasField("current_deployment_version"):
        return routing.current_deployment_version.build_id or None
    return None


def _ramping(routing: RoutingConfig) -> str | None:
    if routing.HasField("ramping_deployment_version"):
        return routing.ramping_deployment_version.build_id or None
    return None


# The server could not answer this time (a busy or restarting server cancels or times
# out its deployment operations): ask again, within `CLAIM_PATIENCE_SECONDS`.
_TRANSIENT = frozenset(
    {
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)
_DESCRIBE_ATTEMPTS = 6


async def describe(client: Client, deployment: str) -> DeploymentState | None:
    """The deployment's builds and routing; None when no worker has joined it yet. A
    server too busy to answer (it cancels the read) is asked again a few times."""
    pause = 0.25
    for attempt in range(_DESCRIBE_ATTEMPTS):
        try:
            answer = await client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(
                    namespace=client.namespace, deployment_name=deployment
                )
            )
            break
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            if err.status not in _TRANSIENT or attempt == _DESCRIBE_ATTEMPTS - 1:
                raise
        await asyncio.sleep(pause)
        pause *= 2
    info = answer.worker_deployment_info
    builds = [
        BuildState(
            build_id=s.deployment_version.build_id,
            status=_STATUS.get(s.status, "unknown"),
            created=s.create_time.ToDatetime().isoformat(timespec="seconds") + "Z",
        )
        for s in sorted(info.version_summaries, key=lambda s: s.create_time.ToDatetime())
    ]
    return DeploymentState(
        name=deployment,
        current=_current(info.routing_config),
        ramping=_ramping(info.routing_config),
        ramp_percentage=info.routing_config.ramping_version_percentage,
        builds=builds,
        conflict_token=answer.conflict_token,
    )


async def set_current(
    client: Client, deployment: str, build_id: str, *, conflict_token: bytes = b""
) -> None:
    """Make `build_id` current: new sessions start on it (a ramp to it ends)."""
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment,
            build_id=build_id,
            conflict_token=conflict_token,
            identity=client.identity,
        )
    )


async def set_ramping(client: Client, deployment: str, build_id: str, percentage: float) -> None:
    """Start `percentage` % of new sessions on `build_id`, the rest on the current build."""
    await client.workflow_service.set_worker_deployment_ramping_version(
        SetWorkerDeploymentRampingVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment,
            build_id=build_id,
            percentage=percentage,
            identity=client.identity,
        )
    )


# Another worker changed the routing meanwhile, or the server does not know the
# version yet (its polls are still being registered): look again, a few times.
_RACED = frozenset(
    {
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.ABORTED,
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.ALREADY_EXISTS,
    }
)
CLAIM_PATIENCE_SECONDS = 60.0


async def claim_current(
    client: Client,
    version: WorkerDeploymentVersion,
    *,
    always: bool = False,
    patience: float = CLAIM_PATIENCE_SECONDS,
) -> bool:
    """Make `version` current if its deployment has no current build (its first run),
    or `always`; True if it is current now. Call once the version's workers poll: two
    workers racing to claim are settled by the conflict token, and the loser finds the
    winner's build. A server that cannot answer for now is asked again for `patience`
    seconds (a worker that gave up would serve nothing new: no build current)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    races, pause = 0, 0.5
    while True:
        try:
            state = await describe(client, version.deployment_name)
            if state is not None and state.current == version.build_id:
                return True
            if state is not None and state.current is not None and not always:
                return False
            await set_current(
                client,
                version.deployment_name,
                version.build_id,
                conflict_token=state.conflict_token if state else b"",
            )
            return True
        except RPCError as err:
            if err.status in _RACED:
                races += 1
                if races >= 5:
                    return False
            elif err.status not in _TRANSIENT or loop.time() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 5.0)


async def unversioned_pollers(client: Client, queue: str) -> set[str]:
    """Workers without versioning (an earlier release) the server has seen poll `queue`
    for workflow tasks (on its root partition)."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    versioned = WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED
    return {
        p.identity
        for p in answer.pollers
        if p.deployment_options.worker_versioning_mode != versioned
    }


async def wait_drained(
    client: Client, deployment: str, *, interval: float = 2.0, timeout: float | None = None
) -> list[str]:
    """Wait until no build but the current and ramping ones is draining, that is until
    every session pinned to an old build has ended; returns the drained builds."""
    async with asyncio.timeout(timeout):
        while True:
            state = await describe(client, deployment)
            if state is None:
                return []
            if not any(b.status == "draining" for b in state.builds):
                return [b.build_id for b in state.builds if b.status == "drained"]
            await asyncio.sleep(interval)
