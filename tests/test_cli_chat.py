"""`sessionflow chat` and `sessionflow tail`, driven as a person (or a script) would."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from sessionflow.cli.localstack import LocalStack
from sessionflow.contract import TurnStatus
from tests.agents import (
    FLAKY_TEXT,
    approval_agent,
    flaky_agent,
    reasoning_agent,
    streaming_agent,
    tool_agent,
    unknown_model_agent,
)
from tests.conftest import StartWorker
from tests.processes import REPO
from tests.test_cli import cli_env

pytestmark = pytest.mark.slow


async def spawn(stack: LocalStack, task_queue: str, *args: str) -> asyncio.subprocess.Process:
    env = cli_env(
        TEMPORAL_ADDRESS=stack.config.temporal_address,
        REDIS_URL=stack.config.redis_url,
        SESSIONFLOW_TASK_QUEUE=task_queue,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessionflow", *args, env=env, cwd=REPO,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_until(
    proc: asyncio.subprocess.Process, text: str, seen: bytearray, count: int = 1
) -> None:
    assert proc.stdout is not None
    while seen.count(text.encode()) < count:
        chunk = await asyncio.wait_for(proc.stdout.read(4096), timeout=30)
        assert chunk, f"output ended before {text!r}:\n{seen.decode()}"
        seen.extend(chunk)


async def test_chat_streams_answers_and_asks_for_approval(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([approval_agent, tool_agent])
    proc = await spawn(stack, task_queue, "chat", unique_id, "--agent", "approver")
    assert proc.stdin is not None
    seen = bytearray()
    await read_until(proc, "you> ", seen)
    proc.stdin.write(b"run something\n")
    await read_until(proc, "Allow Bash? [y/N]", seen)
    proc.stdin.write(b"y\n")
    await read_until(proc, "Result: approved-run", seen)
    await read_until(proc, "you> ", seen)
    proc.stdin.close()
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    seen.extend(out)
    assert proc.returncode == 0, seen.decode()
    assert "▶ Bash: echo approved-run" in seen.decode()
    history = await client.agent("approver").session(unique_id).history()
    assert history[-1].tool_parts()[0].approval.approved is True  # type: ignore[union-attr]


async def test_ctrl_c_interrupts_the_answer_and_a_second_quits(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([streaming_agent])
    proc = await spawn(stack, task_queue, "chat", unique_id, "--agent", "streamer")
    assert proc.stdin is not None
    seen = bytearray()
    await read_until(proc, "you> ", seen)
    proc.stdin.write(b"tell me everything\n")
    await read_until(proc, "word5 ", seen)
    proc.send_signal(signal.SIGINT)
    await read_until(proc, "[interrupted", seen)
    await read_until(proc, "you> ", seen)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), timeout=30)
    assert proc.returncode == 0
    session = client.agent("streamer").session(unique_id)
    info = await session.info()
    assert info.status.value == "interrupted"


async def test_tail_follows_a_session_across_turns_by_workflow_id(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    first = await session.send("make a file and read it")
    assert (await first.outcome).status is TurnStatus.FINISHED
    proc = await spawn(stack, task_queue, "tail", session.workflow_id, "--json")
    seen = bytearray()
    await read_until(proc, '"type": "finish"', seen)
    second = await session.send("again")
    await second.done
    await read_until(proc, '"type": "finish"', seen, count=2)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), timeout=30)
    events = [json.loads(line) for line in seen.decode().splitlines() if line.startswith("{")]
    messages = {e["message_id"] for e in events}
    assert messages == {first.assistant_message_id, second.assistant_message_id}
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))


async def test_send_and_tail_print_a_retried_step_once(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    # The flaky agent's first attempt prints half its text and fails; the retry
    # prints all of it. The CLI shows what the message ends up with: the text, once.
    client = await start_worker([flaky_agent])
    session = client.agent("flaky").session(unique_id)
    tailing = await spawn(stack, task_queue, "tail", session.workflow_id)
    await asyncio.sleep(1.0)  # the tail is reading before the answer starts
    sender = await spawn(stack, task_queue, "send", unique_id, "--agent", "flaky", "go")
    sent, errors = await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 0, errors.decode()
    # `send` returned once the turn was recorded (not merely streamed): history has it.
    history = await session.history()
    assert history[-1].text() == FLAKY_TEXT
    seen = bytearray()
    await read_until(tailing, FLAKY_TEXT, seen)
    tailing.send_signal(signal.SIGINT)
    await asyncio.wait_for(tailing.wait(), timeout=30)
    for output in (sent.decode(), seen.decode()):
        assert output.count(FLAKY_TEXT) == 1, output
        # The failed attempt's partial text (a prefix of the answer) is not there either.
        assert output.count(FLAKY_TEXT[:12]) == 1, output


async def test_send_exits_1_naming_the_cause_when_the_turn_fails(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    await start_worker([unknown_model_agent])
    sender = await spawn(stack, task_queue, "send", unique_id, "--agent", "misnamed", "hi")
    _, errors = await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 1, errors.decode()
    assert errors.decode().startswith("Error: "), errors.decode()
    assert "provider 'nowhere' is not configured" in errors.decode()


async def test_history_prints_each_message_s_parts_in_the_order_they_happened(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([tool_agent, reasoning_agent])
    tooling = client.agent("tooling").session(unique_id)
    note = {"type": "file", "media_type": "text/plain", "url": "data:text/plain;base64,aGk=",
            "filename": "notes.txt"}  # fmt: skip
    sent = await tooling.send([{"type": "text", "text": "make a file and read it"}, note])
    assert (await sent.outcome).status is TurnStatus.FINISHED
    proc = await spawn(stack, task_queue, "history", unique_id, "--agent", "tooling")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    order = [
        "user:\n",
        "make a file and read it\n",
        "[file notes.txt (text/plain)]",
        "assistant:\n",
        "Listing the workspace.\n\n  ▶ Bash: echo hello > a.txt; ls  [output-available]\n",
        "    │ a.txt\n",
        "Reading it back.\n\n  ▶ Bash: cat a.txt  [output-available]\n    │ hello\n",
        "\nThe file says: hello",
    ]
    at = [text.find(piece) for piece in order]
    assert -1 not in at and at == sorted(at), (at, text)
    assert "step-start" not in text and "Listing the workspace.Reading" not in text

    # Reasoning is labelled, a failed call says why, and --json is still a message a line.
    reasoner = client.agent("reasoner").session(f"{unique_id}-r")
    assert (await (await reasoner.send("go")).outcome).status is TurnStatus.FINISHED
    proc = await spawn(stack, task_queue, "history", f"{unique_id}-r", "--agent", "reasoner")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    text = out.decode()
    order = ["(thinking) Think first.\n", "\nRunning.\n", "  ▶ Bash: echo hi  [output-available]",
             "  ▶ Nope: {}  [output-error]\n    ✗ ", "\nDone: "]  # fmt: skip
    at = [text.find(piece) for piece in order]
    assert -1 not in at and at == sorted(at), (at, text)
    proc = await spawn(
        stack, task_queue, "history", f"{unique_id}-r", "--agent", "reasoner", "--json"
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [m["role"] for m in lines] == ["user", "assistant"]
    assert [p["type"] for p in lines[1]["parts"]][:3] == ["step-start", "reasoning", "text"]


async def test_send_sets_the_step_cap_and_a_capped_turn_says_so(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    """The tooling agent's first answer takes three steps; capped at one, the turn
    stops after the first with its own outcome and a note the user sees."""
    client = await start_worker([tool_agent])
    args = ("send", unique_id, "--agent", "tooling", "--max-steps", "1", "go")
    sender = await spawn(stack, task_queue, *args)
    sent, errors = await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 0, errors.decode()
    assert "[Stopped after 1 model steps, the limit for one turn;" in sent.decode()
    session = client.agent("tooling").session(unique_id)
    reply = (await session.history())[-1]
    assert reply.step_count() == 1
    (note,) = [p for p in reply.parts if p.type == "data-notice"]
    assert note.data["kind"] == "step-limit"  # type: ignore[union-attr]
    outcome = await session.answer(reply.id).outcome
    assert outcome.status is TurnStatus.STEP_LIMIT
    refused = await spawn(stack, task_queue, *args[:5], "0", "go")
    _, errors = await asyncio.wait_for(refused.communicate(), timeout=60)
    assert refused.returncode == 2 and "0 is not in the range x>=1" in errors.decode()
