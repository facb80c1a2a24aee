"""How turns end, from the session's side: the answers it knows of, the outcomes it
remembers for `wait_turn`, and what a turn's end leaves behind.

A client that sent a message waits for its answer by the answer's id (`wait_turn`),
possibly long after the turn ended or from a later run, so the session remembers the
newest `limits.remembered_outcomes` outcomes and carries them across continue-as-new.
An answer is known from the moment its message is queued until its outcome is
forgotten, with no gap between: while a turn commits its finished answer it is no
longer running nor yet remembered, and a wait for it must not be told
`MessageNotFound` then. A repeated delivery of a known answer's message is dropped.

A turn's end also counts it in the worker's metrics (not again when the workflow is
replayed) and deletes its transient context from Redis, best effort: the context's
TTL remains, and the session must go on regardless.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import (
        ActivityName,
        ForgetContextParams,
        SendRequest,
        SessionStatus,
        TurnOutcome,
        TurnStatus,
        UsageReport,
    )
    from sessionflow.messages import Usage
    from sessionflow.workflows import calls, policies

# What the session's status is once a turn ended so.
STATUS_AFTER = {
    TurnStatus.FINISHED: SessionStatus.IDLE,
    TurnStatus.STEP_LIMIT: SessionStatus.IDLE,
    TurnStatus.BUDGET_EXCEEDED: SessionStatus.IDLE,
    TurnStatus.INTERRUPTED: SessionStatus.INTERRUPTED,
    TurnStatus.ROLLED_BACK: SessionStatus.IDLE,
    TurnStatus.FAILED: SessionStatus.FAILED,
}


class Answers:
    def __init__(self, outcomes: list[TurnOutcome]) -> None:
        self._outcomes = {o.message_id: o for o in outcomes}
        # The answer whose turn just ended, until its outcome is remembered.
        self.ending: str | None = None

    def remember(self, outcome: TurnOutcome, limit: int) -> None:
        """Remember `outcome`, forgetting the oldest past `limit`."""
        self._outcomes[outcome.message_id] = outcome
        while len(self._outcomes) > limit:
            del self._outcomes[next(iter(self._outcomes))]

    def outcome(self, message_id: str) -> TurnOutcome | None:
        return self._outcomes.get(message_id)

    def ended(self, message_id: str) -> bool:
        return message_id in self._outcomes

    def remembered(self) -> list[TurnOutcome]:
        """The outcomes remembered, oldest first (what continue-as-new carries)."""
        return list(self._outcomes.values())

    def known(self, message_id: str, *, running: str | None, inbox: list[SendRequest]) -> bool:
        """Whether `message_id` is an answer of this session: being written (`running`),
        just ended, remembered, or its message queued."""
        return (
            running == message_id
            or message_id == self.ending
            or message_id in self._outcomes
            or any(r.assistant_message_id == message_id for r in inbox)
        )


def usage_of(report: UsageReport, message_id: str) -> Usage:
    """Tokens the steps of one answer used (of the steps remembered)."""
    total = Usage()
    for step in report.steps:
        if step.message_id == message_id:
            total = total + step.usage
    return total


def count(outcome: TurnOutcome, agent: str) -> None:
    """Turn and error metrics (not re-emitted when the workflow is replayed)."""
    meter = workflow.metric_meter()
    labels = {"agent": agent, "status": outcome.status.value}
    meter.create_counter("sessionflow_turns", "Turns ended, by outcome").add(1, labels)
    if outcome.status is TurnStatus.FAILED:
        meter.create_counter("sessionflow_errors", "Failed turns, by error type").add(
            1, {"agent": agent, "type": outcome.error_type or "unknown"}
        )


async def forget_context(request: SendRequest) -> None:
    """Delete the ended turn's context from Redis (best effort: its TTL remains)."""
    if request.context_ref is None:
        return
    try:
        await calls.local(
            ActivityName.FORGET_CONTEXT,
            ForgetContextParams(
                workflow_id=workflow.info().workflow_id, context_ref=request.context_ref
            ),
            policies.FORGET_CONTEXT,
            summary="forget context",
        )
    except ActivityError as err:
        workflow.logger.warning("could not delete the turn's context: %s", err)
