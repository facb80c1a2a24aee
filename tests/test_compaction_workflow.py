"""Compaction as the workflow makes it (fast harness): once, announced, durable.

The model-step fake answers `compact` as the real activity does when a request would
pass the threshold; the `compact` fake summarises. What is checked is what the workflow
does with them: one summary, a `data-compaction` start and end, the record carried into
every later step, and no second summary when a new worker takes the session over.
"""

from __future__ import annotations

import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sessionflow.compaction import CompactionRecord
from sessionflow.contract import ActivityName, FinishReason, ModelStepResult, TurnStatus
from sessionflow.messages import DataPart, Usage
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows.session import SessionWorkflow
from tests.workflow_fakes import MODEL, Fakes, retryable, text_step
from tests.workflow_harness import Harness, stop


def compact_step(stage: str = "summary", summarized: int = 2) -> ModelStepResult:
    """What the model-step activity answers when the request would not fit."""
    return ModelStepResult(
        parts=[],
        tool_calls=[],
        usage=Usage(),
        model=MODEL,
        finish_reason=FinishReason.OTHER,
        compact=CompactionRecord(
            stage=stage,  # type: ignore[arg-type]
            made_at=4,
            summarized=summarized if stage == "summary" else 0,
            cleared=0 if stage == "summary" else 3,
            tokens_before=170_000,
            tokens_after=60_000,
            window=200_000,
        ),
    )


def compaction_parts(chunks: list[dict[str, object]]) -> list[dict[str, object]]:
    return [c for c in chunks if c.get("type") == "data-compaction"]


async def test_a_summary_is_made_once_announced_and_sent_from_then_on(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [text_step("first"), compact_step(), text_step("second"), text_step("third")]
    session, first = await harness.start("one")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    second = await session.send("two")
    assert (await session.wait(second)).status is TurnStatus.FINISHED

    assert len(fakes.compactions) == 1
    assert fakes.compactions[0].proposal.summarized == 2
    # The step after the summary, and every later one, is sent compacted.
    calls = fakes.model_calls
    assert [c.compaction is not None for c in calls] == [False, False, True]
    sent = calls[-1].compaction
    # By reference: the summary is in the answer's part, not in every step's input.
    assert sent is not None and sent.summary is None and sent.summarized == 2
    third = await session.send("three")
    assert (await session.wait(third)).status is TurnStatus.FINISHED
    assert fakes.model_calls[-1].compaction == sent

    # Announced: start, then end with the same id; the end is kept in the answer.
    chunks = compaction_parts(fakes.published_chunks(second))
    assert [c["data"]["status"] for c in chunks] == ["start", "end"]  # type: ignore[index]
    assert chunks[0]["id"] == chunks[1]["id"]
    messages = await session.messages()
    assert len(messages) == 6  # history keeps every message
    kept = [p for p in messages[3].parts if isinstance(p, DataPart)]
    assert [p.type for p in kept] == ["data-compaction"]
    assert kept[0].data["summary"] == "summary of 2 messages"
    assert kept[0].id == sent.part_id
    assert kept[0].data["status"] == "end"
    # The summarising step's tokens count in the session's usage.
    assert (await session.usage()).total.input_tokens == 3 * 10 + 10  # three steps, one summary


async def test_clearing_tool_results_needs_no_summary(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [compact_step("clear"), text_step("answer")]
    session, first = await harness.start("one")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    assert fakes.compactions == []
    last = fakes.model_calls[-1].compaction
    assert last is not None and last.stage == "clear" and last.cleared == 3
    # The start of the answer came from the workflow: the step must not start it again.
    assert fakes.model_calls[-1].started is True
    assert fakes.model_calls[0].started is False


async def test_a_replayed_compaction_is_never_summarised_again(
    workflow_env: WorkflowEnvironment,
) -> None:
    """The summary is an activity result in history. With no workflow cache, every
    workflow task replays the session from its first event (as a new worker taking it
    over does), through the compaction; the summarising attempt fails once, as one
    whose worker was killed does, and the step after it fails once too: the summary is
    recorded once, announced once, and the same record is sent from then on."""
    fakes = Fakes()
    task_queue = f"logic-{uuid.uuid4().hex[:12]}"
    fakes.steps = [
        text_step("first"),
        compact_step(),
        retryable("ModelUnavailable", "overloaded"),
        text_step("second"),
        text_step("third"),
    ]
    fakes.script(ActivityName.COMPACT, retryable("ModelUnavailable", "worker lost"))
    harness = Harness(workflow_env, fakes, task_queue)
    worker = Worker(
        workflow_env.client,
        task_queue=task_queue,
        workflows=[SessionWorkflow],
        activities=fakes.activities(),
        workflow_runner=_WORKFLOW_RUNNER,
        max_cached_workflows=0,
    )
    async with worker:
        session, first = await harness.start("one")
        try:
            assert (await session.wait(first)).status is TurnStatus.FINISHED
            second = await session.send("two")
            assert (await session.wait(second)).status is TurnStatus.FINISHED
            third = await session.send("three")
            assert (await session.wait(third)).status is TurnStatus.FINISHED
            assert len(fakes.compactions) == 2  # one lost attempt, one that finished
            records = [c.compaction for c in fakes.model_calls]
            assert records[-1] is not None and records[-1].part_id is not None
            assert records[-1] == records[-2] == records[-3]
            messages = await session.messages()
            assert len(messages) == 6
            kept = [p for m in messages for p in m.parts if p.type == "data-compaction"]
            assert len(kept) == 1
            chunks = compaction_parts(fakes.published_chunks(second))
            assert [c["data"]["status"] for c in chunks] == ["start", "end"]  # type: ignore[index]
        finally:
            await stop(session)
