"""A worker SIGKILLed in the middle of a compaction's summary: another worker resumes
the session, and the compaction is made, recorded and announced exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.messages import DataPart
from tests.history import activity_attempts, scheduled_activities, workflow_events
from tests.processes import WorkerProcess
from tests.test_worker_crash import worker_process  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

COMPACT = "sessionflow.compact"
MESSAGE = "a long message " * 200  # 3,000 characters: 750 tokens


async def until_compacting(client: Client, workflow_id: str) -> None:
    """Until a worker has started the summarising activity."""
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(600):
        pending = (await handle.describe()).raw_description.pending_activities
        if any(
            a.activity_type.name == COMPACT
            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in pending
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the summary never started")


async def test_a_worker_killed_mid_summary_leaves_one_compaction(
    worker_process: Callable[..., WorkerProcess],  # noqa: F811
    temporal: Client,
    redis: Redis,
    task_queue: str,
    unique_id: str,
) -> None:
    first = worker_process("tests.agents:compacting_agent", log="first")
    await first.start()
    client = SessionClient(temporal, redis, task_queue=task_queue)
    session = client.agent("compacting").session(unique_id)
    turn = 0
    while True:
        turn += 1
        result = await session.send(MESSAGE)
        waiting = asyncio.ensure_future(result.outcome)
        compacting = asyncio.ensure_future(until_compacting(temporal, session.workflow_id))
        done, _ = await asyncio.wait({waiting, compacting}, return_when=asyncio.FIRST_COMPLETED)
        if compacting in done:
            break
        compacting.cancel()
        assert waiting.result().status is TurnStatus.FINISHED
        assert turn < 6, "no compaction in five turns"
    first.kill()  # in the middle of the summary; the fixture stops the second worker
    await worker_process("tests.agents:compacting_agent", log="second").start()
    outcome = await asyncio.wait_for(waiting, timeout=60)
    assert outcome.status is TurnStatus.FINISHED
    after = await (await session.send(MESSAGE)).outcome
    assert after.status is TurnStatus.FINISHED
    history = await session.history()

    assert len(history) == 2 * (turn + 1)
    assert history[2 * turn - 1].text() == f"Turn {turn} of {2 * turn} messages."
    parts = [p for m in history for p in m.parts if isinstance(p, DataPart)]
    assert [(p.type, p.data["stage"]) for p in parts][:1] == [("data-compaction", "summary")]
    killed = [p for p in history[2 * turn - 1].parts if isinstance(p, DataPart)]
    assert len(killed) == 1  # recorded once, though its first attempt was lost
    assert killed[0].data["summary"].startswith("The user sent long messages")

    events = await workflow_events(temporal, session.workflow_id)
    scheduled = scheduled_activities(events)
    assert scheduled.count(COMPACT) == len(parts)
    assert 2 in activity_attempts(events)  # the summary the killed worker had begun
