"""`session.sandbox`: the session's sandbox, reached through its workflow.

Commands run as activities of the session (visible in its history, retried like
tool calls), so the sandbox is the same one the agent's tools use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from sessionflow.client.calls import SessionCalls
from sessionflow.contract import ExecRequest, ExecResult, SandboxStatus, SessionInfo
from sessionflow.errors import InvalidInput, SessionClosed, SessionNotFound
from sessionflow.validation import describe
from sessionflow.workflows.session import SessionWorkflow


class SessionSandbox:
    """A lazy handle: nothing happens until a method is awaited."""

    def __init__(self, calls: SessionCalls) -> None:
        self._calls = calls

    async def exec(
        self,
        command: str | Mapping[str, Any],
        args: list[str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a command; creates the sandbox if needed.

        Without `args`, `command` is a shell command line. With `args`, `command` is
        the program and each argument reaches it as is (quoted for you). A non-zero
        exit code is a result, not an error. The reference SDK's one-object form,
        `exec({"command": "npm", "args": ["test"]})`, works too.
        """
        if isinstance(command, Mapping):
            try:
                request = ExecRequest.model_validate(command)
            except ValidationError as err:
                raise InvalidInput(f"sandbox.exec: {describe(err, ExecRequest)}") from None
        else:
            request = ExecRequest(command=command, args=args, cwd=cwd, timeout=timeout)
        # Starts a session that never ran; an ended one raises rather than reopen empty.
        await self._calls.start(reopen=False)
        result: ExecResult = await self._calls.update(SessionWorkflow.sandbox_exec, request)
        return result

    async def get_status(self) -> SandboxStatus | None:
        """Running, paused or stopped; None before the session has a sandbox.

        A closed session's sandbox is stopped (the close killed it); a session that
        failed or was terminated raises `SessionFailed`: its sandbox may be in any
        state, and no run of the session is left to ask."""
        try:
            status: SandboxStatus | None = await self._calls.update(SessionWorkflow.sandbox_status)
        except SessionNotFound:
            return None
        except SessionClosed:
            return SandboxStatus.STOPPED if await self.get_id() is not None else None
        return status

    async def get_id(self) -> str | None:
        """The sandbox id, or None until the session has a sandbox."""
        try:
            info: SessionInfo = await self._calls.query(SessionWorkflow.info)
            return info.sandbox_id
        except SessionNotFound:
            return None
