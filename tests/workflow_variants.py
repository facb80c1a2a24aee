"""Workflow variants for deploy tests: code a later build might ship, registered under
the session workflow's name. Its own module, imported afresh by the workflow sandbox,
so it does nothing at import time but define the classes."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import WORKFLOW_NAME, SendRequest, SessionInput
    from sessionflow.workflows.session import SessionWorkflow


@workflow.defn(name=WORKFLOW_NAME, versioning_behavior=VersioningBehavior.PINNED)
class SandboxFirstSession(SessionWorkflow):
    """Every turn ensures the sandbox before its first model step: one activity call
    more, at the start of a turn, so it does not replay a history the session workflow
    recorded."""

    @workflow.run
    async def run(self, input: SessionInput) -> None:
        await super().run(input)

    async def _take_turn(self, request: SendRequest) -> None:
        await self.ensure_sandbox(self.ref(request.assistant_message_id, 0))
        await super()._take_turn(request)


@workflow.defn(name="legacy-release")
class LegacyRelease:
    """Stands for an earlier release's workflow on an unversioned worker."""

    @workflow.run
    async def run(self) -> None:
        return None
