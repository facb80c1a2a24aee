"""A session's webhooks, from the workflow's side: which URL its events go to, and
starting one delivery per event without ever waiting for it.

The URL is the session's own when it was given one (`send(..., webhook_url=...)`,
`update(webhook_url=...)`; "" for none), else its agent's. The workflow cannot import
agents, so it learns the agent's URL from the client that starts the session (when that
client knows the agent) and again from every model step, which the worker answers
with the agent's current settings; both are carried across continue-as-new.

Each event starts a `WebhookDeliveryWorkflow` child, abandoned (see that module for
why a child and not an activity). A turn only *schedules* the start: the start runs as
a task of its own while the session goes on. The run waits for its starts to be
acknowledged before it continues as new or completes (`settled`), since a start
command still in flight when a run closes may never be carried out; that wait is one
server round trip, never the delivery. Sessions with no URL start nothing, so their
histories are exactly what they were before webhooks.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import (
        WebhookDelivery,
        WebhookEvent,
        WebhookEventType,
        WebhookTargets,
    )
    from sessionflow.ids import session_workflow_id, tenant_of, webhook_event_id
    from sessionflow.messages import Usage
    from sessionflow.workflows.webhook_delivery import WEBHOOK_WORKFLOW_NAME


def created_at(now: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as JSON APIs write it."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class Webhooks:
    def __init__(
        self, session_id: str, agent: str, targets: WebhookTargets | None, agent_url: str | None
    ) -> None:
        self._session_id = session_id
        self._agent = agent
        # The session's workflow id, from its input rather than `workflow.info()`: the
        # same, but a replay (which runs under another id) derives the same child ids.
        self._workflow_id = session_workflow_id(agent, session_id)
        self.targets = targets or WebhookTargets(agent_url=agent_url)
        # Child starts scheduled and not yet acknowledged by the server.
        self._starting: set[asyncio.Task[None]] = set()

    def learn_agent_url(self, url: str | None) -> None:
        """The agent's URL as the worker that ran a model step knows it."""
        self.targets.agent_url = url

    def set_session_url(self, url: str | None) -> None:
        """The session's own URL from now on ("" for none); None changes nothing."""
        if url is not None:
            self.targets.session_url = url

    def turn_finished(self, message_id: str, outcome: str, usage: Usage) -> None:
        self._emit(WebhookEventType.TURN_FINISHED, message_id, outcome, message_id, usage)

    def approval_requested(self, message_id: str, approval_ids: list[str], usage: Usage) -> None:
        if approval_ids:
            key = f"{message_id}:{approval_ids[0]}"
            self._emit(WebhookEventType.APPROVAL_REQUESTED, key, None, message_id, usage)

    async def session_ended(self, reason: str, usage: Usage) -> None:
        """The session's last event; returns once its delivery has started (the run,
        and on delete its history, is about to go)."""
        key = workflow.info().first_execution_run_id
        self._emit(WebhookEventType.SESSION_ENDED, key, reason, None, usage)
        await self.settled()

    async def settled(self) -> None:
        """Wait until every delivery this run scheduled has started."""
        await workflow.wait_condition(lambda: not self._starting)

    def _emit(
        self,
        kind: WebhookEventType,
        key: str,
        outcome: str | None,
        message_id: str | None,
        usage: Usage,
    ) -> None:
        url = self.targets.url()
        if url is None:
            return
        tenant = tenant_of(self._session_id)
        event = WebhookEvent(
            id=webhook_event_id(self._workflow_id, kind.value, key),
            type=kind,
            session_id=self._session_id[len(tenant) + 1 :] if tenant else self._session_id,
            outcome=outcome,
            assistant_message_id=message_id,
            usage=usage,
            created_at=created_at(workflow.now()),
        )
        delivery = WebhookDelivery(
            url=url, event=event, session_id=self._session_id, agent=self._agent
        )
        task = asyncio.ensure_future(self._start(delivery))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start(self, delivery: WebhookDelivery) -> None:
        event = delivery.event
        try:
            await workflow.start_child_workflow(
                WEBHOOK_WORKFLOW_NAME,
                delivery,
                id=f"webhook:{self._workflow_id}:{event.id}",
                task_queue=workflow.info().task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{event.type.value} of session {self._session_id}",
            )
        except WorkflowAlreadyStartedError:
            pass  # the same event is being (or was) delivered already
        except Exception as err:  # a webhook must never fail its session
            workflow.logger.warning("could not start the webhook delivery: %s", err)
