"""Logs bound to their session with no secrets in them, and Prometheus metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from sessionflow.cli.localstack import StackConfig, free_port
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from tests.agents import context_agent
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow

SECRET = "sk-live-observability-0xDEADBEEF"


async def test_worker_logs_are_bound_to_the_session_and_hold_no_context(
    stack_config: StackConfig, temporal: Client, redis: Redis, task_queue: str,
    sandbox_root: Path, unique_id: str, tmp_path: Path,
) -> None:  # fmt: skip
    log = tmp_path / "worker.log"
    metrics_port = free_port()
    worker = WorkerProcess(
        stack_config, task_queue=task_queue, agents="tests.agents:context_agent",
        sandbox_root=sandbox_root, log=log, metrics_address=f"127.0.0.1:{metrics_port}",
    )  # fmt: skip
    await worker.start()
    try:
        client = SessionClient(temporal, redis, task_queue=task_queue, agents=[context_agent])
        session = client.agent(context_agent).session(unique_id)
        result = await session.send(
            "who am I?", context={"user": "grace-hopper-context", "api_token": SECRET}
        )
        assert (await result.outcome).status is TurnStatus.FINISHED
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    finally:
        assert worker.stop() == 0, "the worker did not shut down cleanly on SIGTERM"

    text = log.read_text()
    assert SECRET not in text
    assert "grace-hopper-context" not in text  # no context value either
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    from_activities = [line for line in lines if line.get("activity_type")]
    events = {line["event"] for line in from_activities}
    assert {"model step finished", "tool finished"} <= events
    for line in from_activities:
        assert line["workflow_id"] == session.workflow_id
        assert line["session_id"] == unique_id and line["agent"] == "contextual"
        assert line["run_id"] and isinstance(line["attempt"], int)
    assert any(line.get("event") == "worker stopping" for line in lines)

    for name in (
        "sessionflow_turns", "sessionflow_model_steps", "sessionflow_tokens",
        "sessionflow_tool_duration", "sessionflow_chunk_publish_latency", "sessionflow_chunks",
        "temporal_activity_execution_latency", "temporal_activity_schedule_to_start_latency",
    ):  # fmt: skip
        assert name in metrics, f"{name} is not exported"
    turns = [
        m
        for m in metrics.splitlines()
        if m.startswith("sessionflow_turns") and 'status="finished"' in m
    ]
    assert turns and float(turns[0].rsplit(" ", 1)[1]) >= 1


async def test_metrics_address_with_port_0_serves_on_any_free_port() -> None:
    """README: `host:0` picks a free port (it used to exit "the port is in use": the
    probe socket still held each candidate port when it was offered)."""
    from sessionflow.config import Settings
    from sessionflow.worker.metrics_endpoint import metrics_endpoint

    served = metrics_endpoint(Settings.from_env({"SESSIONFLOW_METRICS_ADDRESS": "127.0.0.1:0"}))
    assert served is not None
    _, address = served
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    async with httpx.AsyncClient() as http:
        scraped = await http.get(f"http://{address}/metrics")
    assert scraped.status_code == 200
