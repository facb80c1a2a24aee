"""Sandbox activities: lifecycle (a session gets its sandbox before its first tool
runs), and the direct `session.sandbox` calls of clients."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from temporalio import activity

from sessionflow.activities.failures import to_application_error
from sessionflow.activities.heartbeat import heartbeating
from sessionflow.chunks import status_chunk
from sessionflow.contract import ActivityName, EnsureSandboxParams, SandboxExecParams, SandboxRef
from sessionflow.errors import SandboxNotFound, SessionflowError
from sessionflow.ids import sandbox_owner
from sessionflow.sandbox.base import ExecResult, SandboxBackend, SandboxStatus
from sessionflow.streams.publisher import StepStream, StreamPublisher


@dataclass
class SandboxActivities:
    sandboxes: SandboxBackend
    publisher: StreamPublisher

    @activity.defn(name=ActivityName.ENSURE_SANDBOX)
    async def ensure_sandbox(self, params: EnsureSandboxParams) -> SandboxRef:
        """Connect to the session's sandbox, creating it (again) if there is none."""
        ref = params.ref
        owner = sandbox_owner(ref.session_id)
        where = StepStream(
            ref.workflow_id, ref.message_id, ref.step, activity.info().attempt, source="sandbox"
        )
        try:
            if params.sandbox_id is not None:
                try:
                    existing = await self.sandboxes.connect(params.sandbox_id, owner=owner)
                    return SandboxRef(sandbox_id=existing.id)
                except SandboxNotFound:
                    if params.must_exist:
                        raise
                    status = status_chunk("sandbox-setup", recreated=params.sandbox_id)
            else:
                status = status_chunk("sandbox-setup")
            async with self.publisher.writer(where) as writer:
                writer.emit(status)
            # Creating can take a while (a cloud VM); heartbeats keep it within the
            # lifecycle preset's heartbeat timeout, which is what detects a dead worker.
            async with heartbeating():
                created = await self.sandboxes.create(owner=owner)
            return SandboxRef(sandbox_id=created.id)
        except SessionflowError as err:
            raise to_application_error(err) from err

    @activity.defn(name=ActivityName.SANDBOX_EXEC)
    async def sandbox_exec(self, params: SandboxExecParams) -> ExecResult:
        """A command a client runs directly in the session's sandbox."""
        request = params.request
        command = request.command
        if request.args:
            command = shlex.join([command, *request.args])
        try:
            owner = sandbox_owner(params.ref.session_id)
            sandbox = await self.sandboxes.connect(params.sandbox_id, owner=owner)
            async with heartbeating():
                return await sandbox.exec(command, cwd=request.cwd, timeout=request.timeout)
        except SessionflowError as err:
            raise to_application_error(err) from err

    @activity.defn(name=ActivityName.SANDBOX_PAUSE)
    async def sandbox_pause(self, sandbox_id: str) -> None:
        """Pause an idle session's sandbox; the next `connect` resumes it."""
        try:
            async with heartbeating():
                await (await self.sandboxes.connect(sandbox_id)).pause()
        except SandboxNotFound:
            return
        except SessionflowError as err:
            raise to_application_error(err) from err

    @activity.defn(name=ActivityName.SANDBOX_KILL)
    async def sandbox_kill(self, sandbox_id: str) -> None:
        """Release a closed session's sandbox for good."""
        try:
            async with heartbeating():
                await (await self.sandboxes.connect(sandbox_id)).kill()
        except SandboxNotFound:
            return
        except SessionflowError as err:
            raise to_application_error(err) from err

    @activity.defn(name=ActivityName.SANDBOX_STATUS)
    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        try:
            async with heartbeating():
                return await (await self.sandboxes.connect(sandbox_id)).status()
        except SandboxNotFound:
            return SandboxStatus.STOPPED
