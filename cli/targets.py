"""Which session a command means: one id form for every command, the agent by default.

Every session command takes the id the user gave the session (`order-chat`), the same
id the web page of `sessionflow dev` shows: with a tenant (`--tenant`, else
`SESSIONFLOW_TENANT`, else `dev` with the local stack) the session's full id is
`<tenant>:<id>` (`dev:order-chat`, the id Python's `SessionClient` takes). A
session's workflow id (`session:<agent>:<full id>`, what the Temporal UI shows) is
taken too, when it names a session that exists and nothing else does.

Without `--agent`, the agent is the only one served: the agents whose task queues
(`<SESSIONFLOW_TASK_QUEUE>.<agent>`) the deployment's current (and ramping) build
registered with Temporal, and that a worker polls now. When several are served, an
existing session's id picks its agent if it is one of theirs; otherwise the command
asks for `--agent`, naming them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from sessionflow.client.client import SessionClient
from sessionflow.client.listing import SessionRow
from sessionflow.config import Settings
from sessionflow.connections import task_queue_pollers
from sessionflow.errors import InvalidInput, SessionNotFound, TemporalUnavailable
from sessionflow.ids import (
    PREFIX,
    parse_session_workflow_id,
    session_workflow_id,
    tenant_session_id,
)


@dataclass(frozen=True)
class Target:
    """A session as a command names it: the id given, the full id and the agent."""

    given: str
    session_id: str
    agent: str
    tenant: str | None
    # Named by the user (--agent, or by workflow id): a hint must name it too.
    agent_given: bool = False
    tenant_given: bool = False

    @property
    def workflow_id(self) -> str:
        return session_workflow_id(self.agent, self.session_id)

    @property
    def shown(self) -> str:
        """The id as the CLI takes it: without the tenant the CLI adds itself."""
        if self.tenant and self.session_id.startswith(f"{self.tenant}:"):
            return self.session_id[len(self.tenant) + 1 :]
        return self.session_id

    def command(self, name: str, *args: str) -> str:
        """`sessionflow <name> <id> [args] [--agent ...] [--tenant ...]`, as a user
        would type it to reach this session again."""
        words = ["sessionflow", name, self.shown, *args]
        if self.agent_given:
            words += ["--agent", self.agent]
        if self.tenant_given:
            words += ["--tenant", self.tenant or ""]
        return shlex.join(words)


async def served_agents(temporal: Client, settings: Settings) -> list[str]:
    """The agents new sessions can go to: those whose task queues the deployment's
    current and ramping builds registered, and whose queue a worker polls; [] when
    this cannot be told (no deployment yet, or not allowed to ask)."""
    base = f"{settings.task_queue}."
    try:
        deployment = await temporal.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=temporal.namespace, deployment_name=settings.deployment
            )
        )
        routing = deployment.worker_deployment_info.routing_config
        versions = [
            getattr(routing, field)
            for field in ("current_deployment_version", "ramping_deployment_version")
            if routing.HasField(field)
        ]
        queues: set[str] = set()
        for version in versions:
            described = await temporal.workflow_service.describe_worker_deployment_version(
                DescribeWorkerDeploymentVersionRequest(
                    namespace=temporal.namespace, deployment_version=version
                )
            )
            for queue in described.worker_deployment_version_info.task_queue_infos:
                if queue.type == TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW and (
                    queue.name.startswith(base)
                ):
                    queues.add(queue.name)
        workflow = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        polled = [q for q in sorted(queues) if await task_queue_pollers(temporal, q, workflow)]
    except RPCError as err:
        if err.status is RPCStatusCode.UNAVAILABLE:
            raise TemporalUnavailable(
                f"the Temporal server is unreachable ({err.message})"
            ) from err
        return []  # no deployment yet, not allowed to ask, too busy to say: --agent then
    return [q[len(base) :] for q in polled]


async def _exists(client: SessionClient, agent: str, session_id: str) -> bool:
    try:
        return await client.agent(agent).session(session_id).exists()
    except InvalidInput:
        return False


async def resolve(
    client: SessionClient,
    settings: Settings,
    given: str,
    *,
    agent: str | None,
    tenant: str | None,
    tenant_given: bool,
) -> Target:
    """The session `given` names (see the module's docstring); `InvalidInput` when the
    agent cannot be told, or `given` could be two sessions."""
    full = tenant_session_id(tenant, given)
    by_workflow = _by_workflow_id(given, agent, tenant, tenant_given)
    if by_workflow is not None:
        # A session whose own id is `given` (for the agent the workflow id names) would
        # make it ambiguous; no such session, the workflow id it is.
        if await _exists(client, by_workflow.agent, full):
            if await _exists(client, by_workflow.agent, by_workflow.session_id):
                raise InvalidInput(
                    f"{given!r} is both a workflow id and the id of another session of agent "
                    f"{by_workflow.agent!r}: pass that session's id alone instead"
                )
            return Target(
                given, full, by_workflow.agent, tenant, agent_given=True, tenant_given=tenant_given
            )
        return by_workflow
    if agent is not None:
        return Target(given, full, agent, tenant, agent_given=True, tenant_given=tenant_given)
    served = await served_agents(client.temporal, settings)
    if len(served) == 1:
        return Target(given, full, served[0], tenant, tenant_given=tenant_given)
    where = f"task queues {settings.task_queue}.<agent> of deployment {settings.deployment!r}"
    if not served:
        raise InvalidInput(
            f"pass --agent: found no agent served here ({where}); start a worker with "
            "`sessionflow dev` or `sessionflow worker --agents <module>:<attr>`"
        )
    having = [a for a in served if await _exists(client, a, full)]
    if len(having) == 1:
        return Target(given, full, having[0], tenant, agent_given=True, tenant_given=tenant_given)
    names = ", ".join(served)
    if having:
        raise InvalidInput(f"pass --agent: session {given!r} exists for agents {', '.join(having)}")
    raise InvalidInput(f"pass --agent: several agents are served ({names})")


def _by_workflow_id(
    given: str, agent: str | None, tenant: str | None, tenant_given: bool
) -> Target | None:
    """The session whose workflow id `given` is, if it is one (of `agent`, if given)."""
    if not given.startswith(PREFIX):
        return None
    try:
        named_agent, session_id = parse_session_workflow_id(given)
    except ValueError:
        return None
    if agent is not None and agent != named_agent:
        return None
    # Shown as the CLI names it under the tenant used, if it is that tenant's.
    if tenant and session_id.startswith(f"{tenant}:"):
        return Target(given, session_id, named_agent, tenant, True, tenant_given)
    return Target(given, session_id, named_agent, None, agent_given=True, tenant_given=True)


async def not_found(client: SessionClient, target: Target, command: str) -> SessionNotFound:
    """`SessionNotFound` saying where the command looked (tenant, agent, workflow id)
    and how to name the session the user may have meant."""
    whose = f"tenant {target.tenant!r}" if target.tenant else "no tenant"
    lines = [
        f"no session {target.shown!r} of agent {target.agent!r} under {whose} "
        f"(session id {target.session_id!r}, workflow id {target.workflow_id!r})"
    ]
    if target.tenant and target.given.startswith(f"{target.tenant}:"):
        lines.append(
            f"the CLI adds the tenant itself: name the session "
            f"{target.given[len(target.tenant) + 1 :]!r}, not {target.given!r}"
        )
    for row in await _namesakes(client, target):
        mine = bool(target.tenant) and row.session_id.startswith(f"{target.tenant}:")
        other = Target(
            target.given,
            row.session_id,
            row.agent,
            target.tenant if mine else None,
            agent_given=True,
            tenant_given=not mine,
        )
        lines.append(f"there is a session of agent {row.agent!r}: {other.command(command)}")
    if target.tenant:
        lines.append(
            f"in Python that is client.agent({target.agent!r}).session("
            f"{target.session_id!r}); `sessionflow sessions` lists tenant "
            f"{target.tenant}'s sessions by the ids the CLI takes"
        )
    else:
        lines.append("`sessionflow sessions` lists the sessions")
    return SessionNotFound("; ".join(lines))


async def _namesakes(client: SessionClient, target: Target) -> list[SessionRow]:
    """Running sessions the user may have meant: the same id under another agent or
    tenant, or with the tenant prefix given twice or left out."""
    bare = target.given.rpartition(":")[2]
    try:
        rows = await client.list_sessions(limit=1000)
    except RPCError:
        return []
    return [
        row
        for row in rows
        if (row.session_id, row.agent) != (target.session_id, target.agent)
        and (row.session_id.rpartition(":")[2] == bare)
    ][:3]
