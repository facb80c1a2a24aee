"""A later build's workflow code for tests/test_upgrade_on_new_build.py, registered
under the session workflow's name. Its own module, imported afresh by the workflow
sandbox, so it does nothing at import time but define the class."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import WORKFLOW_NAME, SendRequest, SessionInput
    from sessionflow.workflows.session import SessionWorkflow


@workflow.defn(name=WORKFLOW_NAME, versioning_behavior=VersioningBehavior.PINNED)
class SandboxAfterSession(SessionWorkflow):
    """Every turn ensures the sandbox once it has ended: one activity call more, so it
    does not replay a history the session workflow recorded. After the turn, because
    the answer is remembered by then: a client asking for it meanwhile finds it."""

    @workflow.run
    async def run(self, input: SessionInput) -> None:
        await super().run(input)

    async def _take_turn(self, request: SendRequest) -> None:
        await super()._take_turn(request)
        await self.ensure_sandbox(self.ref(request.assistant_message_id, 0))
