"""Debug logging is for reading: a worker at SESSIONFLOW_LOG_LEVEL=debug logs a denied
approval, and an answer the workflow refuses, without tracebacks (the SDK logs every
refused update with one; a refusal on purpose is a line naming the error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.cli.localstack import StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.errors import ApprovalNotPending
from sessionflow.messages import ToolState
from tests.agents import approval_agent
from tests.processes import WorkerProcess
from tests.test_approvals import until_approval

pytestmark = pytest.mark.slow


async def test_a_denied_approval_logs_no_tracebacks_at_debug_level(
    stack_config: StackConfig, temporal: Client, redis: Redis, task_queue: str,
    sandbox_root: Path, unique_id: str, tmp_path: Path,
) -> None:  # fmt: skip
    log = tmp_path / "worker.log"
    worker = WorkerProcess(
        stack_config, task_queue=task_queue, agents="tests.agents:approval_agent",
        sandbox_root=sandbox_root, log=log, env={"SESSIONFLOW_LOG_LEVEL": "debug"},
    )  # fmt: skip
    await worker.start()
    try:
        client = SessionClient(temporal, redis, task_queue=task_queue, agents=[approval_agent])
        session = client.agent(approval_agent).session(unique_id)
        result = await session.send("please run it")
        _, approval_id = await until_approval(result.stream())
        denial = {"approval_id": approval_id, "approved": False, "reason": "not today"}
        denied = await session.send({"type": "approval", "approval": denial})
        assert (await denied.outcome).status is TurnStatus.FINISHED
        # Answering again is refused by the workflow's update validator.
        with pytest.raises(ApprovalNotPending):
            await session.send({"type": "approval", "approval": denial})
        (part,) = (await session.history())[-1].tool_parts()
        assert part.state is ToolState.OUTPUT_DENIED
    finally:
        assert worker.stop() == 0, log.read_text()[-3000:]

    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # Debug logging was on: the SDK's own debug lines are there.
    assert any(line.get("level") == "debug" for line in lines), text[-3000:]
    assert "RestrictedWorkflowAccessError" not in text, text[-6000:]
    assert "Traceback" not in text, text[-6000:]
    # The refused second answer is still logged, as one line naming the error.
    (refused,) = [line for line in lines if "ApprovalNotPending" in str(line.get("event"))]
    assert refused["level"] == "debug" and "exception" not in refused, refused
