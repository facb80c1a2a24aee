"""A schedule's message reaching its session: what `Session.send` does for a text
message, from a worker (`workflows.scheduled_send`).

The message's id and its answer's id come from the firing's workflow run, so a retried
attempt sends the same message, which the session recognises and ignores
(`SessionWorkflow.send` drops a known answer id): one firing, one message.

`if_busy` picks how a message that finds the session in a turn is answered: today
`interrupt` interrupts the running turn first (as `interrupt_if_streaming=True`), and
every other strategy queues it behind the turn (`enqueue`).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from sessionflow.agents.definition import Agent
from sessionflow.agents.registry import AgentRegistry
from sessionflow.config import agent_task_queue
from sessionflow.contract import (
    WORKFLOW_NAME,
    ActivityName,
    IfBusy,
    ScheduledSend,
    ScheduledSendResult,
    SendRequest,
    SessionInput,
    SessionLimits,
)
from sessionflow.errors import SessionflowError
from sessionflow.ids import session_workflow_id
from sessionflow.messages import Message, Role, TextPart
from sessionflow.streams.reader import StreamReader

log = structlog.get_logger(__name__)

# The signal a first send starts the session with (`workflows.session.SEND_SIGNAL`).
SEND_SIGNAL = "send"
# The update a send with a busy strategy of `reject` or `rollback` goes through.
SEND_MESSAGE_UPDATE = "send_message"


@dataclass
class ScheduledSendActivities:
    temporal: Client
    reader: StreamReader
    agents: AgentRegistry
    # The base task queue: the session runs on `<base>.<agent>`.
    task_queue: str
    # For a session the schedule starts: the idle TTL of agents that set none.
    default_idle_ttl: float | None
    search_attributes: bool = True

    @activity.defn(name=ActivityName.SCHEDULED_SEND)
    async def scheduled_send(self, send: ScheduledSend) -> ScheduledSendResult:
        info = activity.info()
        seed = hashlib.sha256(f"{info.workflow_id}\n{info.workflow_run_id}".encode()).hexdigest()
        text = TextPart(text=send.message)
        message = Message(id=f"msg_{seed[:32]}", role=Role.USER, parts=[text])
        request = SendRequest(
            message=message,
            assistant_message_id=f"msg_{seed[32:64]}",
            interrupt=send.if_busy is IfBusy.INTERRUPT,
            if_busy=send.if_busy,
        )
        workflow_id = session_workflow_id(send.agent, send.session_id)
        start = SessionInput(
            session_id=send.session_id,
            agent=send.agent,
            limits=self._limits(send.agent),
            search_attributes=self.search_attributes,
            agent_webhook_url=self._agent_webhook(send.agent),
        )
        options: dict[str, Any] = {
            "id": workflow_id,
            "task_queue": agent_task_queue(self.task_queue, send.agent),
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            "static_summary": f"{send.agent}: {' '.join(send.message.split())[:80]}",
            "static_details": f"Session `{send.session_id}` of agent `{send.agent}` (Sessionflow).",
        }
        previous = await self.reader.record_sent(workflow_id, request.assistant_message_id)
        try:
            if send.if_busy in (IfBusy.REJECT, IfBusy.ROLLBACK):
                # Decided by the session, as a client's send with this strategy is: the
                # `send_message` update, starting the session if it does not run.
                await self.temporal.execute_update_with_start_workflow(
                    SEND_MESSAGE_UPDATE,
                    request,
                    start_workflow_operation=WithStartWorkflowOperation(
                        WORKFLOW_NAME, start, **options
                    ),
                )
            else:
                await self.temporal.start_workflow(
                    WORKFLOW_NAME,
                    start,
                    start_signal=SEND_SIGNAL,
                    start_signal_args=[request],
                    **options,
                )
        except WorkflowUpdateFailedError as err:
            with contextlib.suppress(Exception):
                await self.reader.unrecord_sent(workflow_id, request.assistant_message_id, previous)
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "TurnRunning":
                log.info(
                    "scheduled message skipped: a turn was running (if_busy=reject)",
                    schedule=send.schedule,
                    session_id=send.session_id,
                )
                return ScheduledSendResult(assistant_message_id=None)
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self.reader.unrecord_sent(workflow_id, request.assistant_message_id, previous)
            raise
        log.info(
            "scheduled message sent",
            schedule=send.schedule,
            session_id=send.session_id,
            agent=send.agent,
            message_id=request.assistant_message_id,
        )
        return ScheduledSendResult(assistant_message_id=request.assistant_message_id)

    def _known(self, agent: str) -> Agent | None:
        try:
            return self.agents.get(agent)
        except SessionflowError:
            return None

    def _limits(self, agent: str) -> SessionLimits:
        known = self._known(agent)
        ttl = known.idle_ttl if known is not None else "default"
        seconds = self.default_idle_ttl if ttl == "default" else ttl
        return SessionLimits(close_after_idle_seconds=seconds or None)

    def _agent_webhook(self, agent: str) -> str | None:
        known = self._known(agent)
        return known.webhook_url if known is not None else None
