"""ScheduledSendWorkflow: what a session's schedule starts each time it fires.

A Temporal Schedule can only start workflows, and a session takes messages through
signal-with-start, so each firing starts this short workflow, whose one activity sends
the schedule's message to the session as a client would (`activities.scheduled_send`)
and returns the answer's message id. It runs on the agent's task queue, so only
workers that serve the agent run it, and it does not wait for the answer: the
session answers scheduled messages like any other, by the busy strategy the schedule
names (`ScheduledSend.if_busy`).

Short-lived and trivial, it follows new builds (AUTO_UPGRADE).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import ActivityName, ScheduledSend, ScheduledSendResult
    from sessionflow.workflows import policies

SCHEDULED_SEND_WORKFLOW_NAME = "SessionflowScheduledSend"


@workflow.defn(
    name=SCHEDULED_SEND_WORKFLOW_NAME, versioning_behavior=VersioningBehavior.AUTO_UPGRADE
)
class ScheduledSendWorkflow:
    @workflow.run
    async def run(self, send: ScheduledSend) -> str | None:
        """The answer's message id; None when `if_busy="reject"` found the session in
        a turn and this firing sent nothing."""
        preset = policies.SCHEDULED_SEND
        result: ScheduledSendResult = await workflow.execute_activity(
            ActivityName.SCHEDULED_SEND.value,
            send,
            result_type=ScheduledSendResult,
            start_to_close_timeout=preset.start_to_close,
            retry_policy=preset.retry,
            summary=f"send to {send.session_id}: {' '.join(send.message.split())[:60]}",
        )
        return result.assistant_message_id
