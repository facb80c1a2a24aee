"""WebhookDeliveryWorkflow: one webhook event, delivered at least once.

A session starts one per event as a child with `ParentClosePolicy.ABANDON` and does
not wait for it (`workflows.webhooks`). Why a child workflow rather than an activity
the session starts and never awaits: an activity belongs to the run that scheduled
it, and a session's run ends often (continue-as-new between turns, close, idle TTL,
delete, which also deletes the run): from then on the server records no result and
schedules no retry of that run's activities, so a receiver that was down when the
session moved on would never get its event. An abandoned child lives on by itself,
its activity's retries kept by the server, whatever the session does after starting
it. Its id is the event's id (REJECT_DUPLICATE), so one event is one delivery
workflow, even if it were started twice.

It does nothing but run the delivery activity, so it may move to a newer build
(AUTO_UPGRADE) while its receiver is down for days, rather than keep an old build
alive.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import ActivityName, WebhookDelivery
    from sessionflow.workflows import policies

WEBHOOK_WORKFLOW_NAME = "SessionflowWebhookDelivery"


@workflow.defn(name=WEBHOOK_WORKFLOW_NAME, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, delivery: WebhookDelivery) -> int:
        """POST the event until the receiver answers 2xx; the status it answered."""
        preset = policies.WEBHOOK
        status: int = await workflow.execute_activity(
            ActivityName.DELIVER_WEBHOOK.value,
            delivery,
            result_type=int,
            start_to_close_timeout=preset.start_to_close,
            schedule_to_close_timeout=policies.WEBHOOK_SCHEDULE_TO_CLOSE,
            retry_policy=preset.retry,
            summary=f"{delivery.event.type.value} → {delivery.url[:100]}",
        )
        return status
