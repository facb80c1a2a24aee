"""A worker SIGKILLed in the middle of a turn: another worker finishes it, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from sessionflow.cli.localstack import StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.client.session import Session
from sessionflow.contract import (
    ApprovalResponse,
    SessionLimits,
    SessionStatus,
    TurnOutcome,
    TurnStatus,
)
from sessionflow.messages import Message, MessageStatus, StepStartPart, ToolState
from sessionflow.streams.assemble import assemble
from sessionflow.streams.reader import StreamEvent
from tests.agents import SLOW_SCRIPT
from tests.history import (
    activity_attempts,
    completed_activities,
    scheduled_activities,
    workflow_events,
)
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_process(
    stack_config: StackConfig, task_queue: str, sandbox_root: Path, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Makes `sessionflow worker` processes on the test's task queue and sandbox root;
    any still running when the test ends (a failed test) are stopped."""
    made: list[WorkerProcess] = []

    def make(agents: str, log: str = "worker") -> WorkerProcess:
        process = WorkerProcess(
            stack_config,
            task_queue=task_queue,
            agents=agents,
            sandbox_root=sandbox_root,
            log=tmp_path / f"{log}.log",
        )
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()


async def test_worker_killed_mid_step_turn_completes_with_each_step_once(
    worker_process: Callable[..., WorkerProcess],
    temporal: Client,
    redis: Redis,
    task_queue: str,
    sandbox_root: Path,
    unique_id: str,
) -> None:
    def worker() -> WorkerProcess:
        return worker_process("tests.agents:slow_agent")

    first = worker()
    await first.start()
    client = SessionClient(temporal, redis, task_queue=task_queue)
    session = client.agent("slow").session(unique_id)
    result = await session.send("go")

    # Kill the worker while the second model step streams: one step and one tool
    # are already recorded, one step is in flight.
    events: list[StreamEvent] = []
    async for event in result.stream():
        events.append(event)
        if event.step == 1 and event.type == "text-delta":
            first.kill()
            break

    second = worker()
    await second.start()
    try:
        async for event in session.stream(after=events[-1].id):
            events.append(event)
        outcome = await asyncio.wait_for(result.outcome, timeout=60)
        history = await session.history()
    finally:
        second.stop()

    assert outcome.status is TurnStatus.FINISHED
    assert len(history) == 2
    reply = history[1]
    assert reply.status is MessageStatus.COMPLETE
    assert sum(isinstance(p, StepStartPart) for p in reply.parts) == 3
    steps = SLOW_SCRIPT.turns[0]
    assert reply.text() == "".join(s.text.replace("{last_tool_output}", "1 2 3") for s in steps)
    tools = reply.tool_parts()
    assert [t.state for t in tools] == [ToolState.OUTPUT_AVAILABLE] * 2
    assert [t.output["stdout"] for t in tools] == ["step-one\n", "1 2 3\n"]

    # Temporal history: three model steps and two tools, each scheduled and
    # completed exactly once; the interrupted step needed a second attempt.
    events_in_history = await workflow_events(temporal, session.workflow_id)
    scheduled = scheduled_activities(events_in_history)
    assert scheduled.count("sessionflow.model_step") == 3
    assert scheduled.count("sessionflow.run_tool") == 2
    assert completed_activities(events_in_history) == len(scheduled)
    assert activity_attempts(events_in_history).count(2) == 1

    # The stream announced the retry, and the retried step's chunks say so.
    retries = [e for e in events if e.type == "data-retry"]
    assert [(e.step, e.attempt) for e in retries] == [(1, 2)]
    assert events[-1].type == "finish"
    # What the live reader saw, retry applied, is exactly the message in history...
    assert assemble(events) == reply
    # ...and so is a replay from the message's start, which omits the failed attempt.
    replay = [e async for e in session.stream(message_id=reply.id)]
    assert all(e.attempt == 2 for e in replay if e.step == 1 and e.source == "model")
    assert "data-retry" not in [e.type for e in replay if e.attempt == 1]
    assert assemble(replay) == reply
    # The tool that ran before the crash did not run again.
    (runs,) = sandbox_root.glob("*/runs.txt")
    assert runs.read_text() == "ran\n"


async def until_a_command_is_recorded(redis: Redis, workflow_id: str) -> None:
    """Until the tool call's first command has finished and been recorded (the key
    names the call by its runtime id)."""
    pattern = f"sf:{{{workflow_id}}}:exec:*:1"
    while not [key async for key in redis.scan_iter(match=pattern)]:
        await asyncio.sleep(0.05)


async def crash_after_the_job_ran(
    worker: Callable[[], WorkerProcess], session: Session, redis: Redis
) -> tuple[TurnOutcome, list[Message]]:
    """Run the job agent's turn; kill its worker once the tool's command has finished
    and been recorded (the tool is still busy afterwards: it sleeps); a second worker
    finishes the turn. The outcome and the history."""
    first = worker()
    await first.start()
    result = await session.send("run the job")
    await until_a_command_is_recorded(redis, session.workflow_id)
    first.kill()
    second = worker()
    await second.start()
    try:
        outcome = await asyncio.wait_for(result.outcome, timeout=60)
        return outcome, await session.history()
    finally:
        second.stop()


async def test_a_command_finished_before_a_crash_is_not_run_again(
    worker_process: Callable[..., WorkerProcess],
    temporal: Client,
    redis: Redis,
    task_queue: str,
    sandbox_root: Path,
    unique_id: str,
) -> None:
    session = SessionClient(temporal, redis, task_queue=task_queue).agent("job").session(unique_id)
    outcome, history = await crash_after_the_job_ran(
        lambda: worker_process("tests.agents:job_agent"), session, redis
    )
    assert outcome.status is TurnStatus.FINISHED
    (runs,) = sandbox_root.glob("*/runs.txt")
    assert runs.read_text() == "ran\n", "the finished command ran again on retry"
    (part,) = history[-1].tool_parts()
    assert part.output == {"lines": "1"}
    # A reader replaying the message (the retried tool's attempt applied) sees history.
    assert assemble([e async for e in session.stream(message_id=history[-1].id)]) == history[-1]
    starts = activity_attempts(await workflow_events(temporal, session.workflow_id))
    assert 2 in starts, "the tool activity was retried"


async def test_a_tool_that_must_not_run_twice_reports_an_unknown_outcome_after_a_crash(
    worker_process: Callable[..., WorkerProcess],
    temporal: Client,
    redis: Redis,
    task_queue: str,
    sandbox_root: Path,
    unique_id: str,
) -> None:
    """`retryable=False`: the worker dies after the tool acted; the retry does not run
    it again (no second side effect), and the turn goes on with the model told that
    the call's outcome is unknown."""
    client = SessionClient(temporal, redis, task_queue=task_queue)
    session = client.agent("once-job").session(unique_id)
    outcome, history = await crash_after_the_job_ran(
        lambda: worker_process("tests.agents:once_job_agent"), session, redis
    )
    assert outcome.status is TurnStatus.FINISHED
    (runs,) = sandbox_root.glob("*/runs.txt")
    assert runs.read_text() == "ran\n", "the tool ran again"
    (part,) = history[-1].tool_parts()
    assert part.state is ToolState.OUTPUT_ERROR
    assert part.error_text is not None and part.error_text.startswith("outcome unknown")
    assert history[-1].text().startswith("outcome unknown"), "the model was told"


async def test_two_workers_share_sessions_and_losing_one_loses_no_session(
    worker_process: Callable[..., WorkerProcess],
    temporal: Client,
    redis: Redis,
    task_queue: str,
    sandbox_root: Path,
) -> None:
    def worker(name: str) -> WorkerProcess:
        return worker_process("tests.agents:slow_agent", log=name)

    doomed, survivor = worker("doomed"), worker("survivor")
    await doomed.start()
    client = SessionClient(temporal, redis, task_queue=task_queue)
    sessions = [client.agent("slow").session(f"shared-{i}") for i in range(6)]
    results = [await s.send("go") for s in sessions[:3]]
    # The survivor joins once the doomed worker holds work of its own (left to the
    # server, a loaded machine could hand every session to the first worker polling).
    await survivor.start()
    results += [await s.send("go") for s in sessions[3:]]
    # Kill once every session's first command (the one that writes runs.txt) has
    # finished and been recorded. Killed while that command was running, a session
    # would run it again by design (a command cut off by a crash is re-run: nothing
    # can tell whether it got as far as its side effect), and the count below could
    # not tell a re-run finished command from a re-run unfinished one.
    for session in sessions:
        await until_a_command_is_recorded(redis, session.workflow_id)
    doomed.kill()
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(r.outcome for r in results)), timeout=120
        )
        histories = [await s.history() for s in sessions]
    finally:
        survivor.stop()

    assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 6
    expected = "".join(s.text.replace("{last_tool_output}", "1 2 3") for s in SLOW_SCRIPT.turns[0])
    for history in histories:
        assert history[-1].text() == expected
        assert sum(isinstance(p, StepStartPart) for p in history[-1].parts) == 3
    runs = sorted(p.read_text() for p in sandbox_root.glob("*/runs.txt"))
    assert runs == ["ran\n"] * 6, "a finished command ran twice, or a session lost its tool"
    # Both workers took part, and the killed one was mid-step: some step was retried.
    identities, retried = set(), 0
    for session in sessions:
        for event in (
            await temporal.get_workflow_handle(session.workflow_id).fetch_history()
        ).events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                identities.add(event.activity_task_started_event_attributes.identity)
                retried += event.activity_task_started_event_attributes.attempt > 1
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                identities.add(event.workflow_task_completed_event_attributes.identity)
    assert len(identities) == 2, identities
    assert retried >= 1


async def test_worker_killed_while_a_turn_waits_for_approval(
    worker_process: Callable[..., WorkerProcess],
    temporal: Client,
    redis: Redis,
    task_queue: str,
    unique_id: str,
) -> None:
    first = worker_process("tests.agents:approval_agent")
    await first.start()
    client = SessionClient(temporal, redis, task_queue=task_queue)
    session = client.agent("approver").session(unique_id)
    result = await session.send("please run it")
    events: list[StreamEvent] = []
    async for event in result.stream():
        events.append(event)
        if event.type == "tool-approval-request":
            approval_id = event.chunk.approval_id
            break
    while (await session.info()).status is not SessionStatus.NEEDS_APPROVAL:
        await asyncio.sleep(0.05)
    first.kill()  # the turn is parked on the approval; its worker dies

    second = worker_process("tests.agents:approval_agent", log="second")
    await second.start()
    try:
        approved = await session.approve(ApprovalResponse(approval_id=approval_id, approved=True))
        async for event in session.stream(after=events[-1].id):
            events.append(event)
        outcome = await asyncio.wait_for(approved.outcome, timeout=60)
        history = await session.history()
    finally:
        second.stop()

    assert outcome.status is TurnStatus.FINISHED
    assert [m.role.value for m in history] == ["user", "assistant"]
    reply = history[1]
    assert reply.text() == "I need to run a command.Result: approved-run"
    (part,) = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_AVAILABLE
    assert part.output["stdout"] == "approved-run\n"
    assert assemble(events) == reply
    scheduled = scheduled_activities(await workflow_events(temporal, session.workflow_id))
    assert scheduled.count("sessionflow.model_step") == 2
    assert scheduled.count("sessionflow.run_tool") == 1


async def test_worker_killed_as_a_session_continues_as_new(
    worker_process: Callable[..., WorkerProcess],
    temporal: Client,
    redis: Redis,
    task_queue: str,
    unique_id: str,
) -> None:
    # Every turn crosses the lowered threshold, so each ends in a continue-as-new.
    limits = SessionLimits(continue_as_new_after_events=25)
    first = worker_process("tests.agents:counter_agent")
    await first.start()
    client = SessionClient(temporal, redis, task_queue=task_queue, limits=limits)
    session = client.agent("counter").session(unique_id)
    results = [await session.send(f"count {i}") for i in range(4)]
    handle = temporal.get_workflow_handle(session.workflow_id)
    first_run = (await handle.describe()).run_id
    # Kill the worker the moment the first run hands over to the second: the new
    # run's first workflow task is then being run, or about to be, by the dying worker.
    while (await handle.describe()).run_id == first_run:
        await asyncio.sleep(0.01)
    first.kill()

    second = worker_process("tests.agents:counter_agent", log="second")
    await second.start()
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(*(r.outcome for r in results)), timeout=90)
        history = await session.history()
        info = await session.info()
        state = await session.state()
        replays = [
            [e async for e in session.stream(message_id=m.id)]
            for m in history
            if m.role.value == "assistant"
        ]
    finally:
        second.stop()

    assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 4
    assert info.run_count >= 3
    # Each message once, in order; the tool ran once per turn (state is its count).
    assert [m.text() for m in history[0::2]] == [f"count {i}" for i in range(4)]
    assert [m.text() for m in history[1::2]] == [f"The counter is now {n}." for n in (1, 2, 3, 4)]
    assert state["count"] == 4
    assert [assemble(replay) for replay in replays] == history[1::2]
