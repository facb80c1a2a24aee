"""Assembling a worker: agents, model providers, sandboxes and Redis, injected.

Everything an activity touches is built here and handed to it, so tests can
assemble a worker on their own task queue with their own agents and scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sessionflow.activities import (
    ContextActivities,
    ModelStepActivities,
    PublishActivities,
    SandboxActivities,
    ToolActivities,
    TranscriptActivities,
    metrics,
)
from sessionflow.activities.heartbeat import HEARTBEAT_INTERVAL
from sessionflow.agents.definition import Agent
from sessionflow.agents.registry import AgentRegistry
from sessionflow.providers.base import ModelProvider
from sessionflow.providers.registry import ModelRegistry, with_registered_providers
from sessionflow.providers.scripted import Script, ScriptedProvider
from sessionflow.sandbox.base import SandboxBackend
from sessionflow.sandbox.local import LocalSandboxBackend
from sessionflow.storage import transcript_store
from sessionflow.streams.context import DEFAULT_TTL_SECONDS as DEFAULT_CONTEXT_TTL
from sessionflow.streams.context import ContextStore
from sessionflow.streams.publisher import Retention, StreamPublisher
from sessionflow.worker.interceptors import BoundLogs
from sessionflow.workflows.session import SessionWorkflow

# Activities share the process with the workflow sandbox, and these libraries import
# submodules lazily on first use; letting them pass through keeps such an import,
# should it land during a workflow activation, from being re-imported in the sandbox.
_WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
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


@dataclass
class WorkerOptions:
    task_queue: str = "sessionflow"
    sandbox_root: Path = Path(".sessionflow/sandboxes")
    retention: Retention = field(default_factory=Retention)
    context_ttl_seconds: int = DEFAULT_CONTEXT_TTL
    max_concurrent_activities: int = 200
    max_concurrent_workflow_tasks: int = 100
    max_cached_workflows: int = 1000
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


def build_worker(
    client: Client, redis: Redis, agents: Iterable[Agent], options: WorkerOptions | None = None
) -> Worker:
    """A worker that serves `agents` on `options.task_queue`.

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
    transcripts = transcript_store(client)
    model_steps = ModelStepActivities(registry, models, publisher, contexts, transcripts)
    tools = ToolActivities(registry, sandboxes, publisher, contexts, transcripts)
    committing = TranscriptActivities(transcripts)
    lifecycle = SandboxActivities(sandboxes, publisher)
    publishing = PublishActivities(publisher)
    forgetting = ContextActivities(contexts)
    return Worker(
        client,
        task_queue=options.task_queue,
        workflows=[SessionWorkflow],
        workflow_runner=_WORKFLOW_RUNNER,
        interceptors=[BoundLogs()],
        activities=[
            model_steps.model_step,
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
        ],
        max_concurrent_activities=options.max_concurrent_activities,
        max_concurrent_workflow_tasks=options.max_concurrent_workflow_tasks,
        max_cached_workflows=options.max_cached_workflows,
        graceful_shutdown_timeout=options.graceful_shutdown,
        sticky_queue_schedule_to_start_timeout=options.sticky_schedule_to_start,
        # Heartbeats carry cancellations: send them often enough that an interrupt
        # reaches a running activity well within a second.
        max_heartbeat_throttle_interval=HEARTBEAT_INTERVAL,
        default_heartbeat_throttle_interval=HEARTBEAT_INTERVAL,
    )
