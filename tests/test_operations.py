"""What ops people see: search attributes, UI summaries and details, activity summaries."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from sessionflow.contract import TurnStatus
from tests.agents import approval_agent
from tests.conftest import StartWorker
from tests.test_approvals import until_approval


async def find(temporal: Client, query: str) -> list[Any]:
    """Visibility is eventually consistent: poll a little."""
    for _ in range(100):
        found = [w async for w in temporal.list_workflows(query)]
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


async def test_search_attributes_follow_a_turn_with_an_approval(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send("please run the thing")
    _, approval_id = await until_approval(result.stream())
    wid = session.workflow_id

    waiting = await find(
        client.temporal,
        f'WorkflowId = "{wid}" AND SessionStatus = "needs-approval" AND SessionPendingApprovals = 1',
    )
    assert len(waiting) == 1
    attributes = waiting[0].typed_search_attributes
    assert {p.key.name: p.value for p in attributes}["SessionAgent"] == "approver"

    # The query an ops person would type finds it among everything else, too.
    assert wid in [w.id for w in await find(client.temporal, 'SessionStatus = "needs-approval"')]

    await session.send(
        {"type": "approval", "approval": {"approval_id": approval_id, "approved": True}}
    )
    assert (await result.outcome).status is TurnStatus.FINISHED
    idle = await find(
        client.temporal,
        f'WorkflowId = "{wid}" AND SessionStatus = "idle" AND SessionPendingApprovals = 0 AND SessionTokens > 0',
    )
    assert len(idle) == 1
    values = {p.key.name: p.value for p in idle[0].typed_search_attributes}
    assert values["SessionTokens"] == (await session.usage()).total.total_tokens
    assert values["SessionLastActivity"] is not None


async def test_the_ui_shows_a_title_details_and_activity_summaries(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send(
        "Please   run the deployment checks\nfor release 4.2 and tell me what failed"
    )
    _, approval_id = await until_approval(result.stream())
    handle = client.temporal.get_workflow_handle(session.workflow_id)
    description = await handle.describe()
    summary = await description.static_summary()
    assert (
        summary
        == "approver: Please run the deployment checks for release 4.2 and tell me what failed"
    )
    metadata = await handle.query("__temporal_workflow_metadata")
    assert "needs-approval, 1 approval(s) pending" in metadata.current_details

    await session.send(
        {"type": "approval", "approval": {"approval_id": approval_id, "approved": True}}
    )
    await result.done
    summaries = [
        e.user_metadata.summary.data.decode()
        for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert '"model step 1"' in summaries[0]
    assert '"model step 2: approval"' in summaries  # the model, once known (scripted/approval)
    assert any('"Bash: echo approved-run"' in s for s in summaries)


async def test_sessions_and_inspect_commands(
    stack: object, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    from tests.test_cli_chat import spawn

    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send("run it")
    await until_approval(result.stream())
    await find(
        client.temporal,
        f'WorkflowId = "{session.workflow_id}" AND SessionStatus = "needs-approval"',
    )

    proc = await spawn(stack, task_queue, "sessions", "--status", "needs-approval")  # type: ignore[arg-type]
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    line = next(row for row in out.decode().splitlines() if row.startswith(unique_id))
    assert line.split()[:3] == [unique_id, "approver", "needs-approval"]

    proc = await spawn(stack, task_queue, "inspect", unique_id, "--agent", "approver")  # type: ignore[arg-type]
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "Status      needs-approval" in text
    assert "Approvals   approval-" in text
    assert "user complete    run it" in text
    assert "Bash (approval-requested)" in text


async def test_the_local_stack_registers_search_attributes_in_an_older_data_directory(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from sessionflow.cli.localstack import LocalStack, StackConfig
    from sessionflow.connections import connect_temporal
    from sessionflow.workflows.search import REGISTRATION

    def config(attributes: dict[str, str] | None) -> StackConfig:
        made = StackConfig.on_free_ports(Path(str(tmp_path)))
        if attributes is not None:
            made.search_attributes = attributes
        return made

    async def registered(stack: LocalStack) -> set[str]:
        client = await connect_temporal(stack.config.temporal_address)
        listing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        return set(listing.custom_attributes)

    async with LocalStack(config({})) as old:  # a data directory from before the attributes
        assert not set(REGISTRATION) & await registered(old)
    async with LocalStack(config(None)) as upgraded:
        assert set(REGISTRATION) <= await registered(upgraded)
