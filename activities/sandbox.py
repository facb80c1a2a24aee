"""Sandbox lifecycle activities: a session gets its sandbox before its first tool runs."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from activities.failures import to_application_error
from sandbox.base import SandboxBackend
from sessionflow.errors import SandboxNotFound, SessionflowError
from streams.chunks import DataChunk
from streams.publisher import StepStream, StreamPublisher
from workflows.contract import ActivityName, EnsureSandboxParams, SandboxRef


def status_chunk(status: str, **details: object) -> DataChunk:
    """A transient `data-status` chunk: progress a UI shows but does not keep."""
    return DataChunk(type="data-status", data={"status": status, **details}, transient=True)


@dataclass
class SandboxActivities:
    sandboxes: SandboxBackend
    publisher: StreamPublisher

    @activity.defn(name=ActivityName.ENSURE_SANDBOX)
    async def ensure_sandbox(self, params: EnsureSandboxParams) -> SandboxRef:
        """Connect to the session's sandbox, creating it (again) if there is none."""
        ref = params.ref
        where = StepStream(ref.workflow_id, ref.message_id, ref.step, activity.info().attempt)
        try:
            if params.sandbox_id is not None:
                try:
                    existing = await self.sandboxes.connect(params.sandbox_id)
                    return SandboxRef(sandbox_id=existing.id, created=False)
                except SandboxNotFound:
                    status = status_chunk("sandbox-setup", recreated=params.sandbox_id)
            else:
                status = status_chunk("sandbox-setup")
            async with self.publisher.writer(where) as writer:
                writer.emit(status)
            created = await self.sandboxes.create()
            return SandboxRef(sandbox_id=created.id, created=True)
        except SessionflowError as err:
            raise to_application_error(err) from err
