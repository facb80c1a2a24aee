"""How a session ends: closed (by `close` or its idle TTL) or deleted.

Both run under the session's handler lock, once no turn runs and no `sandbox_exec` is
in flight (`Lifecycle`), in this order, each step only once the one before it
succeeded:

- **closed**: the sandbox is killed, then the stream gets its last chunk and the
  session's Redis keys are deleted (best effort: they expire with their TTL anyway),
  so a new session under the same id starts with an empty stream. The transcript stays
  in the payload store: the closed run's history refers to it, and `history()` still
  reads it until the session is deleted.
- **deleted**: the sandbox is killed, then Redis keys and the payload store namespace
  are erased (`activities.erase`); a failure leaves the session open, and deleting
  again retries. The client then deletes every Temporal run of the workflow id.

A session whose run has already ended (closed, failed, terminated) is erased by a run
started only for that (`SessionInput.erase`): the worker owns the sandbox backend and
the payload store, so the erasing has to happen on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import (
        ActivityName,
        EndStreamParams,
        EraseSessionParams,
        SessionEnd,
        UsageReport,
    )
    from sessionflow.errors import ConnectionFailed, SandboxError
    from sessionflow.workflows import calls, policies
    from sessionflow.workflows.turn import describe_failure
    from sessionflow.workflows.webhooks import Webhooks


def describe(err: ActivityError) -> str:
    """An activity's failure in one line, as a failed turn reports it."""
    return describe_failure(err)[1]


async def kill_sandbox(sandbox_id: str, *, what: str) -> None:
    """Kill the session's sandbox; `SandboxError` naming `what` stays open if it fails."""
    try:
        await calls.call(
            ActivityName.SANDBOX_KILL,
            sandbox_id,
            None,
            policies.SANDBOX_LIFECYCLE,
            summary=f"kill sandbox {sandbox_id}",
        )
    except ActivityError as err:
        raise ApplicationError(
            f"the session's sandbox {sandbox_id} could not be killed ({describe(err)}); "
            f"the session stays open: {what} it again to retry",
            type=SandboxError.__name__,
        ) from None


async def end_stream(session_id: str, agent: str, reason: SessionEnd) -> None:
    """The stream's last chunk, then the session's Redis keys deleted (best effort)."""
    try:
        await calls.call(
            ActivityName.FORGET_STREAM,
            EndStreamParams(
                workflow_id=workflow.info().workflow_id,
                session_id=session_id,
                agent=agent,
                reason=reason,
            ),
            None,
            policies.ERASE,
            summary=f"end the stream ({reason.value})",
        )
    except ActivityError as err:
        # Its keys expire with the stream's TTL; the session must close regardless.
        workflow.logger.warning("could not delete the session's stream: %s", err)


async def erase(session_id: str, agent: str) -> None:
    """Erase the session's Redis keys and payload store namespace; `ConnectionFailed`
    (Redis or the payload store stayed out of reach) when it fails for good."""
    try:
        await calls.call(
            ActivityName.ERASE_SESSION,
            EraseSessionParams(
                workflow_id=workflow.info().workflow_id, session_id=session_id, agent=agent
            ),
            None,
            policies.ERASE,
            summary="erase the session's stream and payloads",
        )
    except ActivityError as err:
        raise ApplicationError(
            f"the session could not be erased ({describe(err)}); delete it again to retry",
            type=ConnectionFailed.__name__,
        ) from None


async def erase_all(session_id: str, agent: str, sandbox_id: str | None) -> None:
    """A delete's work: the sandbox killed, then the session's data erased."""
    if sandbox_id is not None:
        await kill_sandbox(sandbox_id, what="delete")
    await erase(session_id, agent)


class Ended(Protocol):
    """What ending a session reads of it (`SessionWorkflow` has it)."""

    @property
    def session_id(self) -> str: ...

    @property
    def agent(self) -> str: ...

    @property
    def sandbox_id(self) -> str | None:
        """Read once no `sandbox_exec` runs: one may have made the sandbox."""

    @property
    def webhooks(self) -> Webhooks: ...

    @property
    def usage(self) -> UsageReport: ...


class Lifecycle:
    """Where a session stands toward its end; `close` and `delete` run under the
    session's lock (the caller holds it)."""

    def __init__(self) -> None:
        # Set while a close or delete kills the sandbox: no new turn may start in it.
        self.closing = False
        self.closed = False
        # Set by `delete`: messages are dropped, and waits for their answers released.
        self.deleting = False
        # `sandbox_exec` calls in flight: an end waits for them (the sandbox one
        # creates must not outlive the session).
        self._execs = 0

    @property
    def ending(self) -> bool:
        """Closed, or closing: updates that change the session are refused."""
        return self.closing or self.closed

    @contextmanager
    def exec_running(self) -> Iterator[None]:
        self._execs += 1
        try:
            yield
        finally:
            self._execs -= 1

    async def close(self, session: Ended, reason: SessionEnd) -> None:
        """Close the session: `close`, and the idle TTL. A sandbox that will not die
        leaves it open (`SandboxError`)."""
        self.closing = True
        await workflow.wait_condition(lambda: self._execs == 0)
        if session.sandbox_id is not None:
            try:
                await kill_sandbox(session.sandbox_id, what="close")
            except ApplicationError:
                self.closing = False
                raise
        await end_stream(session.session_id, session.agent, reason)
        await session.webhooks.session_ended(reason.value, session.usage.total)
        self.closed = True

    def start_deleting(self) -> None:
        """From the moment `delete` arrives, before it waits for the lock."""
        self.deleting = True
        self.closing = True

    async def delete(self, session: Ended) -> None:
        """Erase the session; a step that fails leaves it open, and deleting again
        retries."""
        self.closing = True
        await workflow.wait_condition(lambda: self._execs == 0)
        try:
            await erase_all(session.session_id, session.agent, session.sandbox_id)
        except ApplicationError:
            self.closing = self.deleting = False
            raise
        await session.webhooks.session_ended(SessionEnd.DELETED.value, session.usage.total)
        self.closed = True
