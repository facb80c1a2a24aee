"""Interrupt notices: the worker of a step just cancelled is told so through Redis.

Temporal's cancel reaches a running step only in the answer to its next heartbeat,
and steps heartbeat slowly between interrupts; a notice moves the session's interrupt
counter in Redis (`activities.interrupt_notice`), which makes the step heartbeat at
once. Notices are started, never awaited: a signal handler sends them, and nothing
waits on one. A notice that fails costs only the time to the step's next heartbeat.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import ActivityName
    from sessionflow.workflows import calls, policies


class InterruptAnnouncer:
    def __init__(self) -> None:
        # Notices on their way, kept until done.
        self._sending: set[asyncio.Future[None]] = set()

    def announce(self) -> None:
        notice = asyncio.ensure_future(_announce(workflow.info().workflow_id))
        self._sending.add(notice)
        notice.add_done_callback(self._sending.discard)


async def _announce(workflow_id: str) -> None:
    try:
        await calls.local(
            ActivityName.ANNOUNCE_INTERRUPT,
            workflow_id,
            policies.ANNOUNCE_INTERRUPT,
            summary="tell the running step",
        )
    except ActivityError as err:
        workflow.logger.warning("could not announce the interrupt: %s", err)
