"""Assembling a worker: agents, model providers, sandboxes and Redis, injected.

Everything an activity touches is built here and handed to it, so tests can
assemble a worker on their own task queue with their own agents and scripts.

Sessions are routed by agent: the client starts an agent's session on the task queue
`<base>.<agent>` (`sessionflow.config.agent_task_queue`), its activities and
continue-as-new runs stay there, and only workers that serve the agent poll it. So one
process runs one Temporal `Worker` per agent it serves.

Every worker is versioned (`sessionflow.worker.versions`): it joins a Worker Deployment
as one build, and sessions are pinned to the build they started on.

A process may run one side only (`WorkerRole`): workflow tasks, or activities. Workflow
activations hold the GIL while they run, so in a process of their own a burst of them
(many turns starting or ending at once) cannot delay the tokens that activities are
streaming; workers of both roles on one task queue make one complete deployment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import structlog
from redis.asyncio import Redis
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import (
    Interceptor,
    PollerBehaviorAutoscaling,
    Worker,
    WorkerDeploymentConfig,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sessionflow.activities import (
    CompactActivities,
    ContextActivities,
    EraseActivities,
    ModelStepActivities,
    PublishActivities,
    SandboxActivities,
    ScheduledSendActivities,
    ToolActivities,
    TranscriptActivities,
    WebhookActivities,
    WebhookConfig,
    metrics,
)
from sessionflow.activities.heartbeat import NOTICED_INTERVAL
from sessionflow.activities.interrupt_notice import InterruptNotices
from sessionflow.agents.definition import Agent
from sessionflow.agents.registry import AgentRegistry
from sessionflow.config import Settings, WorkerRole, agent_task_queue
from sessionflow.connections import task_queue_pollers
from sessionflow.logs import remember_secret
from sessionflow.prices import Price, PriceTable
from sessionflow.providers.base import ModelProvider
from sessionflow.providers.registry import ModelRegistry, with_registered_providers
from sessionflow.providers.scripted import Script, ScriptedProvider
from sessionflow.sandbox.base import SandboxBackend
from sessionflow.sandbox.local import LocalSandboxBackend
from sessionflow.storage import transcript_store
from sessionflow.streams.budget import StreamBudget
from sessionflow.streams.context import ContextStore
from sessionflow.streams.interrupts import InterruptWatch
from sessionflow.streams.publisher import Retention, StreamPublisher
from sessionflow.streams.reader import StreamReader
from sessionflow.worker.interceptors import BoundLogs
from sessionflow.worker.versions import claim_current, deployment_version, unversioned_pollers
from sessionflow.workflows.scheduled_send import ScheduledSendWorkflow
from sessionflow.workflows.session import SessionWorkflow
from sessionflow.workflows.webhook_delivery import WebhookDeliveryWorkflow

# Activities share the process with the workflow sandbox, and these libraries import
# submodules lazily on first use; letting them pass through keeps such an import,
# should it land during a workflow activation, from being re-imported in the sandbox.
# `sessionflow` passes through too, the workflow module included: the sandbox would
# otherwise import `sessionflow.workflows.session` afresh (compiling it when there is
# no bytecode cache) for every workflow instance it builds, 2.5-6 ms holding the GIL on
# the worker's event loop, against 0.2 ms passed through: a burst of new sessions paid
# it once per session. `workflows/` keeps no module state and imports nothing
# nondeterministic, which `tests/test_workflow_imports.py` checks instead.
log = structlog.get_logger(__name__)

MakeCurrent = Literal["first", "always", "never"]

_WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "sessionflow",
        "redis",
        "hiredis",
        "opentelemetry",
        "cryptography",
        "anthropic",
        "httpx",
        "openai",
        "httpx2",
    )
)


_DEFAULT = Settings()


@dataclass
class WorkerOptions:
    """What one worker process is built with: the settings a worker takes (its defaults
    are `Settings`' own; `from_settings` copies them) and what is built for it."""

    # The base task queue: each agent's sessions run on `<task_queue>.<agent>`.
    task_queue: str = _DEFAULT.task_queue
    # The Worker Deployment this worker joins, and its build there (None: derived from
    # the code, `versions.default_build_id`).
    deployment: str = _DEFAULT.deployment
    build_id: str | None = _DEFAULT.build_id
    # Once it polls, make this build current: if the deployment has no current build yet
    # ("first": a fresh deployment needs no step), always (`sessionflow dev`, the only
    # worker of its stack), or never (the operator does, `sessionflow deploy`).
    make_current: MakeCurrent = "first"
    # Workflow tasks, activities, or both (see `WorkerRole`).
    role: WorkerRole = _DEFAULT.worker_role
    # Steps learn of interrupts from Redis and heartbeat every 2 s, not every 0.4 s
    # (`sessionflow.streams.interrupts`).
    interrupt_notices: bool = _DEFAULT.interrupt_notices
    # The name this worker gives in workflow histories; None: the client's identity.
    identity: str | None = None
    sandbox_root: Path = _DEFAULT.sandboxes
    retention: Retention = field(default_factory=Retention)
    # Bytes of tool progress a call, and a turn, may stream (sessionflow.streams.budget).
    stream_budget: StreamBudget = field(default_factory=StreamBudget)
    context_ttl_seconds: int = _DEFAULT.context_ttl_seconds
    # Signing, address checks and retries of webhooks (`activities.webhooks`).
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    # Sessions a schedule starts: the idle TTL of agents that set none, and whether
    # they upsert the Session* search attributes.
    idle_ttl_seconds: int | None = _DEFAULT.idle_ttl_seconds
    search_attributes: bool = True
    # The limits below hold for each task queue polled (one per agent).
    max_concurrent_activities: int = _DEFAULT.max_concurrent_activities
    max_concurrent_workflow_tasks: int = _DEFAULT.max_concurrent_workflow_tasks
    max_cached_workflows: int = _DEFAULT.max_cached_workflows
    # A cached session whose worker stops polling moves to another worker after this.
    sticky_schedule_to_start: timedelta = timedelta(seconds=3)
    # On shutdown, in-flight activities get this long to finish before they are cancelled.
    graceful_shutdown: timedelta = timedelta(seconds=10)
    # Providers beside the scripted one; registered providers not among them (see
    # sessionflow.providers.registry) are added with default settings.
    providers: Sequence[ModelProvider] = ()
    scripts: Sequence[Script] = ()
    # The sandbox backend; by default, local workspaces under `sandbox_root`.
    sandboxes: SandboxBackend | None = None
    # Model prices over the built-in table (SESSIONFLOW_PRICES); agents add their own.
    prices: Mapping[str, Price] = field(default_factory=dict)
    # Temporal's tracing interceptor, when traces are on (`sessionflow.tracing`).
    tracing: Interceptor | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        providers: Sequence[ModelProvider] = (),
        sandboxes: SandboxBackend | None = None,
        make_current: MakeCurrent = "first",
    ) -> WorkerOptions:
        """The options `settings` give, with the providers and sandbox backend built
        from them (`providers_from_settings`, `backend_from_settings`)."""
        remember_secret(settings.webhook_secret, *settings.webhook_secrets.values())
        return cls(
            task_queue=settings.task_queue,
            deployment=settings.deployment,
            build_id=settings.build_id,
            make_current=make_current,
            role=settings.worker_role,
            interrupt_notices=settings.interrupt_notices,
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_cached_workflows=settings.max_cached_workflows,
            sandbox_root=settings.sandboxes,
            retention=Retention(
                max_len=settings.stream_max_len, ttl_seconds=settings.stream_ttl_seconds
            ),
            stream_budget=StreamBudget(
                per_call_bytes=settings.stream_call_budget,
                per_turn_bytes=settings.stream_turn_budget,
            ),
            context_ttl_seconds=settings.context_ttl_seconds,
            webhooks=WebhookConfig(
                secret=settings.webhook_secret,
                tenant_secrets=settings.webhook_secrets,
                allow_private=settings.webhook_allow_private,
                timeout_seconds=settings.webhook_timeout,
                max_retry_interval_seconds=settings.webhook_max_retry_interval,
                retry_for_seconds=settings.webhook_retry_for,
            ),
            idle_ttl_seconds=settings.idle_ttl_seconds,
            providers=providers,
            sandboxes=sandboxes,
            prices=settings.prices,
        )


class SessionWorker:
    """The Temporal workers of one process, one per task queue it polls: each served
    agent's (`<base>.<agent>`), all of one deployment version. Runs, shuts down and
    works as an async context manager as one Temporal `Worker` does.

    Once they poll, the version is made current as `make_current` says."""

    def __init__(
        self,
        client: Client,
        workers: dict[str, Worker],
        role: WorkerRole = WorkerRole.ALL,
        identity: str | None = None,
        *,
        version: WorkerDeploymentVersion,
        make_current: MakeCurrent = "first",
    ) -> None:
        self.client = client
        self.workers = workers
        self.role = role
        self.identity = identity or client.identity
        self.version = version
        self._make_current = make_current
        self._running: asyncio.Task[None] | None = None
        self._claiming: asyncio.Future[bool] | None = None
        self._claim_started = asyncio.Event()

    @property
    def task_queues(self) -> list[str]:
        return list(self.workers)

    @property
    def running(self) -> asyncio.Task[None]:
        """The task that runs the workers inside `async with`."""
        if self._running is None:
            raise RuntimeError("the worker runs inside `async with` only")
        return self._running

    async def run(self) -> None:
        """Run every worker until `shutdown`; if one fails, stop the others and raise."""
        runs = [asyncio.ensure_future(w.run()) for w in self.workers.values()]
        if self._make_current != "never" and self._claiming is None:
            self._claiming = asyncio.ensure_future(self._claim_current())
            self._claim_started.set()
        try:
            await asyncio.gather(*runs)
        except BaseException:
            await self.shutdown()
            await asyncio.gather(*runs, return_exceptions=True)
            raise
        finally:
            if self._claiming is not None and not self._claiming.done():
                self._claiming.cancel()

    async def _claim_current(self) -> bool:
        """Once every queue is polled, make this build current if none is."""
        try:
            await self.wait_polling(timeout=60.0)
            if self._make_current == "first":
                unversioned = {
                    queue: found
                    for queue in self.workers
                    if (found := await unversioned_pollers(self.client, queue))
                }
                if unversioned:
                    # Their running sessions would move onto this build and replay
                    # histories this code did not record.
                    log.warning(
                        "not making this build current: unversioned workers (an earlier "
                        "release) poll its task queues, and their sessions would move to it",
                        deployment=self.version.deployment_name,
                        build_id=self.version.build_id,
                        unversioned_workers=sorted({w for f in unversioned.values() for w in f}),
                        task_queues=sorted(unversioned),
                    )
                    return False
            current = await claim_current(
                self.client, self.version, always=self._make_current == "always"
            )
        except Exception as err:  # e.g. an API key not allowed to change the deployment
            log.warning(
                "could not make this build current",
                deployment=self.version.deployment_name,
                build_id=self.version.build_id,
                error=f"{type(err).__name__}: {' '.join(str(err).split())}",
            )
            return False
        return current

    async def claimed(self) -> bool:
        """Whether this build is its deployment's current one, once it has polled and
        claimed the deployment if it had no current build (False when not claiming)."""
        if self._make_current == "never":
            return False
        await self._claim_started.wait()  # `run` may not have started yet
        assert self._claiming is not None
        return await asyncio.shield(self._claiming)

    async def shutdown(self) -> None:
        """Stop polling; in-flight activities get the graceful shutdown time to finish."""
        await asyncio.gather(*(w.shutdown() for w in self.workers.values()))

    async def wait_polling(self, timeout: float = 30.0) -> None:
        """Return once the server has seen this process poll every agent's task queue
        for each kind of task its role takes (workflow tasks, activity tasks, or both):
        from then on, sessions sent to them are picked up. Raises
        what `run` raised if a worker stopped, `TimeoutError` past `timeout`."""
        identity = self.identity
        # Both kinds for a worker of both roles: its workflow poller can be seen a
        # moment before its activity poller, and a session's first step needs both.
        kinds = [
            kind
            for kind, role in (
                (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, WorkerRole.WORKFLOWS),
                (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, WorkerRole.ACTIVITIES),
            )
            if self.role in (role, WorkerRole.ALL)
        ]
        pending = {(queue, kind) for queue in self.workers for kind in kinds}
        async with asyncio.timeout(timeout):
            while pending:
                if self._running is not None and self._running.done():
                    self._running.result()  # raises the worker's failure
                    raise RuntimeError("the worker stopped before it polled")
                for queue, kind in sorted(pending):
                    pollers = await task_queue_pollers(self.client, queue, kind, [self.version])
                    if identity in pollers:
                        pending.discard((queue, kind))
                if pending:
                    await asyncio.sleep(0.1)

    async def __aenter__(self) -> SessionWorker:
        self._running = asyncio.create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
        if self._running is not None:
            running, self._running = self._running, None
            if exc is None:
                await running
            else:  # the body's error is the one to see
                await asyncio.gather(running, return_exceptions=True)


def task_queues(options: WorkerOptions, agents: Iterable[Agent]) -> list[str]:
    """The task queues a worker serving `agents` polls: each agent's."""
    return [agent_task_queue(options.task_queue, a.name) for a in agents]


def build_worker(
    client: Client, redis: Redis, agents: Iterable[Agent], options: WorkerOptions | None = None
) -> SessionWorker:
    """A worker that serves `agents`, each on its own task queue (`task_queues`).

    Scripts used by the agents (`model=Script(...)`) are registered with the
    scripted provider automatically; each registered provider that `options.providers`
    does not replace is added.
    """
    options = options or WorkerOptions()
    registry = AgentRegistry(agents)
    scripts = [s for a in registry for s in a.scripts()]
    models = ModelRegistry(
        [
            ScriptedProvider([*scripts, *options.scripts]),
            *with_registered_providers(options.providers),
        ]
    )
    publisher = StreamPublisher(
        redis, retention=options.retention, on_write=metrics.chunks_published
    )
    sandboxes = options.sandboxes or LocalSandboxBackend(options.sandbox_root)
    contexts = ContextStore(redis, ttl_seconds=options.context_ttl_seconds)
    # Transcripts go by reference into the client's payload store (None: none).
    transcripts = transcript_store(client)
    interrupts = (
        InterruptWatch(redis, prefix=publisher.prefix) if options.interrupt_notices else None
    )
    model_steps = ModelStepActivities(
        registry,
        models,
        publisher,
        contexts,
        transcripts,
        interrupts=interrupts,
        prices=PriceTable(options.prices),
    )
    compacting = CompactActivities(registry, models, contexts, transcripts, interrupts)
    tools = ToolActivities(
        registry,
        sandboxes,
        publisher,
        contexts,
        transcripts,
        interrupts=interrupts,
        stream_budget=options.stream_budget,
    )
    lifecycle = SandboxActivities(sandboxes, publisher)
    publishing = PublishActivities(publisher)
    forgetting = ContextActivities(contexts)
    committing = TranscriptActivities(transcripts)
    erasing = EraseActivities(publisher, transcripts)
    notices = InterruptNotices(redis, prefix=publisher.prefix)
    webhooks = WebhookActivities(options.webhooks)
    scheduled = ScheduledSendActivities(
        client,
        StreamReader(redis, prefix=publisher.prefix),
        registry,
        options.task_queue,
        default_idle_ttl=options.idle_ttl_seconds,
        search_attributes=options.search_attributes,
    )
    activities: list[Callable[..., Any]] = [
        model_steps.model_step,
        compacting.compact,
        tools.run_tool,
        lifecycle.ensure_sandbox,
        lifecycle.sandbox_exec,
        lifecycle.sandbox_status,
        lifecycle.sandbox_pause,
        lifecycle.sandbox_kill,
        publishing.publish,
        forgetting.forget_context,
        committing.commit_transcript,
        committing.rewind_transcript,
        committing.fork_transcript,
        erasing.forget_stream,
        erasing.erase_session,
        notices.announce_interrupt,
        webhooks.deliver_webhook,
        scheduled.scheduled_send,
    ]
    version = deployment_version(options.deployment, options.build_id)
    workers = {
        queue: Worker(
            client,
            task_queue=queue,
            workflows=[]
            if options.role is WorkerRole.ACTIVITIES
            else [SessionWorkflow, WebhookDeliveryWorkflow, ScheduledSendWorkflow],
            workflow_runner=_WORKFLOW_RUNNER,
            # Sessions are pinned (`SessionWorkflow`'s versioning behavior): each runs on
            # the build it started on, so no build replays another's history.
            deployment_config=WorkerDeploymentConfig(version=version, use_worker_versioning=True),
            interceptors=[BoundLogs(), *([options.tracing] if options.tracing else [])],
            # A workflows-only worker polls no activity tasks, but runs its sessions'
            # local activities (publish, transcript and context writes) itself.
            activities=activities,
            no_remote_activities=options.role is WorkerRole.WORKFLOWS,
            identity=options.identity,
            max_concurrent_activities=options.max_concurrent_activities,
            max_concurrent_workflow_tasks=options.max_concurrent_workflow_tasks,
            max_cached_workflows=options.max_cached_workflows,
            graceful_shutdown_timeout=options.graceful_shutdown,
            sticky_queue_schedule_to_start_timeout=options.sticky_schedule_to_start,
            # Pollers scale with the backlog (the server says when): with the SDK's
            # fixed five, a burst of new sessions had one poller for first workflow
            # tasks, and they queued on the server for seconds (BENCHMARKS.md).
            workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            # Heartbeats carry cancellations: send them often enough that an interrupt
            # reaches a running activity well within a second.
            max_heartbeat_throttle_interval=NOTICED_INTERVAL,
            default_heartbeat_throttle_interval=NOTICED_INTERVAL,
        )
        for queue in task_queues(options, registry)
    }
    return SessionWorker(
        client,
        workers,
        options.role,
        options.identity,
        version=version,
        make_current=options.make_current,
    )
