"""Tool approvals: a durable wait for a person, approved or denied."""

from __future__ import annotations

import asyncio

import pytest

from sessionflow.contract import SessionStatus, TurnStatus
from sessionflow.errors import ApprovalNotPending
from sessionflow.messages import ToolState
from sessionflow.streams.reader import StreamEvent
from tests.agents import approval_agent, selective_agent
from tests.conftest import RUNNING_WORKERS, StartWorker


async def until_approval(events: object) -> tuple[list[StreamEvent], str]:
    seen: list[StreamEvent] = []
    async for event in events:  # type: ignore[attr-defined]
        seen.append(event)
        if event.type == "tool-approval-request":
            return seen, event.chunk.approval_id
    raise AssertionError("no approval request")


async def test_an_approval_waits_through_a_worker_restart_then_runs_the_tool(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send("please run it")
    events, approval_id = await until_approval(result.stream())
    assert [e.type for e in events][-1] == "tool-approval-request"

    info = await session.info()
    assert info.status is SessionStatus.NEEDS_APPROVAL
    assert info.pending_approvals == [approval_id]
    (part,) = (await session.history())[-1].tool_parts()
    assert part.state is ToolState.APPROVAL_REQUESTED
    assert part.approval is not None and part.approval.id == approval_id

    # No worker at all for a while: the wait is durable, held by the Temporal server.
    for worker, task in list(RUNNING_WORKERS):
        await worker.shutdown()
        await task
    RUNNING_WORKERS.clear()
    await asyncio.sleep(1)
    await start_worker([approval_agent])

    approved = await session.send(
        {"type": "approval", "approval": {"approval_id": approval_id, "approved": True}}
    )
    assert approved.assistant_message_id == result.assistant_message_id
    assert (await approved.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    (part,) = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_AVAILABLE
    assert part.approval is not None and part.approval.approved is True
    assert reply.text().endswith("Result: approved-run")
    assert (await session.info()).status is SessionStatus.IDLE

    # Answering again, or an id that never existed, is a clear error and changes nothing.
    for bad in (approval_id, "approval-does-not-exist"):
        with pytest.raises(ApprovalNotPending, match="is not pending"):
            await session.send(
                {"type": "approval", "approval": {"approval_id": bad, "approved": False}}
            )
    assert len(await session.history()) == 2


async def test_a_denied_call_is_not_run_and_the_model_is_told_why(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send("please run it")
    _, approval_id = await until_approval(result.stream())
    denied = await session.send(
        {
            "type": "approval",
            "approval": {"approval_id": approval_id, "approved": False, "reason": "not today"},
        }
    )
    assert (await denied.outcome).status is TurnStatus.FINISHED
    events = [e async for e in result.stream()]
    assert "tool-output-denied" in [e.type for e in events]
    assert "tool-output-available" not in [e.type for e in events]
    reply = (await session.history())[-1]
    (part,) = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_DENIED
    assert part.approval is not None and part.approval.reason == "not today"
    # The next model step saw the denial and its reason.
    assert reply.text().endswith("Result: The user denied this tool call: not today")


async def test_needs_approval_can_depend_on_the_tool_input(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([selective_agent])
    session = client.agent("selective").session(unique_id)
    result = await session.send("clean up")
    events, approval_id = await until_approval(result.stream())
    requests = [e for e in events if e.type == "tool-approval-request"]
    assert len(requests) == 1
    reply = (await session.history())[-1]
    safe, risky = reply.tool_parts()
    assert safe.approval is None and risky.approval is not None
    assert requests[0].chunk.tool_call_id == risky.tool_call_id  # type: ignore[attr-defined]
    await session.send(
        {"type": "approval", "approval": {"approval_id": approval_id, "approved": True}}
    )
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    assert [p.output["stdout"] for p in reply.tool_parts()] == ["safe\n", "removed\n"]


async def test_malformed_approvals_are_rejected_in_the_client(
    start_worker: StartWorker, unique_id: str
) -> None:
    from sessionflow.errors import InvalidInput

    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    for bad in (
        {"type": "approval"},
        {"type": "approval", "approval": {"approval_id": "x"}},
        {"type": "approval", "approval": {"approval_id": "x", "approved": "yes"}},
    ):
        with pytest.raises(InvalidInput, match="approval"):
            await session.send(bad)
