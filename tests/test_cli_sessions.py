"""The session commands end to end, as a person runs them against the real stack: one
id form for every command (the id the user gave, under the CLI's tenant; a workflow id
too), `--agent` defaulting to the only agent served, `send` saying how to answer the
approval it waits for, `approve`/`deny`, `interrupt`, `close`, `delete`, `export`,
`rewind`, and a `SessionNotFound` that says where it looked and what was meant."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessionflow.cli.localstack import LocalStack
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.contract import SessionStatus, TurnStatus
from sessionflow.messages import ToolState
from sessionflow.ui_messages import to_ui_messages
from tests.agents import approval_agent, sleeping_agent, streaming_agent, tool_agent
from tests.conftest import RUNNING_WORKERS, TEST_DEPLOYMENT, StartWorker
from tests.processes import REPO
from tests.test_cli import cli_env

pytestmark = pytest.mark.slow

TENANT = "acme"

# A tool call that runs until interrupted.
napper_agent = sleeping_agent("napper", 777)


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Cli:
    """`sessionflow` against the test stack, its sessions under tenant `acme`."""

    def __init__(self, stack: LocalStack, task_queue: str) -> None:
        self.env = cli_env(
            TEMPORAL_ADDRESS=stack.config.temporal_address,
            REDIS_URL=stack.config.redis_url,
            SESSIONFLOW_TASK_QUEUE=task_queue,
            # The test workers' deployment.
            SESSIONFLOW_DEPLOYMENT=TEST_DEPLOYMENT,
            SESSIONFLOW_TENANT=TENANT,
        )

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessionflow", *args, env=self.env, cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def __call__(self, *args: str) -> Ran:
        proc = await self.start(*args)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        assert proc.returncode is not None
        return Ran(proc.returncode, out.decode(), err.decode())


async def until_served(client: SessionClient, task_queue: str, agents: set[str]) -> None:
    """Wait until the CLI can see every agent the test's worker serves: its build is
    current and has polled their queues (as `sessionflow dev` is when it says ready)."""
    from sessionflow.cli.targets import served_agents

    worker, _ = RUNNING_WORKERS[-1]
    assert await worker.claimed()
    env = {"SESSIONFLOW_TASK_QUEUE": task_queue, "SESSIONFLOW_DEPLOYMENT": TEST_DEPLOYMENT}
    settings = Settings.from_env(env)
    for _ in range(20):
        if set(await served_agents(client.temporal, settings)) == agents:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the CLI never saw agents {agents} served")


async def read_until(stream: asyncio.StreamReader, text: str, seen: bytearray) -> None:
    while text.encode() not in seen:
        chunk = await asyncio.wait_for(stream.read(4096), timeout=30)
        assert chunk, f"output ended before {text!r}:\n{seen.decode()}"
        seen.extend(chunk)


async def test_send_says_how_to_answer_its_approval_and_approve_and_deny_answer_it(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    cli = Cli(stack, task_queue)
    await until_served(client, task_queue, {"approver"})

    # No --agent: the only agent served. The waiting line says what to run.
    sender = await cli.start("send", unique_id, "please run it")
    assert sender.stderr is not None and sender.stdout is not None
    said = bytearray()
    await read_until(sender.stderr, "`\n", said)
    assert (
        said.decode()
        .strip()
        .endswith(
            f"waiting for approval of Bash: echo approved-run: run `sessionflow approve "
            f"{unique_id}` or `sessionflow deny {unique_id}`"
        )
    ), said.decode()
    # The CLI's session is the tenant's: `acme:<id>` in Python.
    session = client.agent("approver").session(f"{TENANT}:{unique_id}")
    (pending,) = (await session.info()).pending_approvals

    approved = await cli("approve", unique_id)
    assert approved.code == 0, approved
    assert approved.out == f"Approved Bash: echo approved-run ({pending})\n"
    out, err = await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 0, err.decode()
    assert "Result: approved-run" in out.decode()
    (part,) = (await session.history())[-1].tool_parts()
    assert part.state is ToolState.OUTPUT_AVAILABLE

    # Nothing pending any more: said so, exit 2.
    again = await cli("approve", unique_id)
    assert (again.code, again.err) == (
        2,
        f"Error: session {unique_id!r} has no approval pending\n",
    )

    # Deny, by approval id, with a reason the model reads.
    denied_id = f"{unique_id}-d"
    sender = await cli.start("send", denied_id, "please run it")
    assert sender.stderr is not None
    await read_until(sender.stderr, "`\n", bytearray())
    other = client.agent("approver").session(f"{TENANT}:{denied_id}")
    (pending,) = (await other.info()).pending_approvals
    denied = await cli("deny", denied_id, pending, "--reason", "not today")
    assert denied.code == 0, denied
    assert denied.out == f"Denied Bash: echo approved-run ({pending})\n"
    await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 0
    (part,) = (await other.history())[-1].tool_parts()
    assert part.state is ToolState.OUTPUT_DENIED
    assert part.approval is not None and part.approval.reason == "not today"


async def test_interrupt_close_and_the_agent_an_existing_session_has(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([napper_agent, tool_agent])
    cli = Cli(stack, task_queue)
    await until_served(client, task_queue, {"napper", "tooling"})

    # Two agents served: a new session needs --agent, and the error names them.
    refused = await cli("send", unique_id, "hello")
    assert refused.code == 2
    assert refused.err == "Error: pass --agent: several agents are served (napper, tooling)\n"

    sender = await cli.start("send", unique_id, "take a nap", "--agent", "napper")
    assert sender.stdout is not None
    await read_until(sender.stdout, "sleep 777", bytearray())  # the tool runs
    # The session exists for one of them only: that is its agent, no --agent needed.
    stopped = await cli("interrupt", unique_id)
    assert stopped.code == 0, stopped
    assert stopped.out == f"Interrupted the answer of session {unique_id}\n"
    out, _ = await asyncio.wait_for(sender.communicate(), timeout=60)
    assert sender.returncode == 0 and "[interrupted" in out.decode()
    session = client.agent("napper").session(f"{TENANT}:{unique_id}")
    assert (await session.info()).status is SessionStatus.INTERRUPTED
    idle = await cli("interrupt", unique_id)
    assert idle.out == f"Session {unique_id} is interrupted: no answer to stop\n", idle

    closed = await cli("close", unique_id)
    assert (closed.code, closed.out) == (0, f"Closed session {unique_id}\n"), closed
    # Its history can still be read; a call that needs it running says it is closed.
    read = await cli("history", unique_id)
    assert read.code == 0 and "take a nap" in read.out, read
    late = await cli("interrupt", unique_id)
    assert late.code == 1 and "closed" in late.err, late


async def test_export_rewind_delete_and_one_id_form_across_commands(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    cli = Cli(stack, task_queue)
    await until_served(client, task_queue, {"tooling"})
    session = client.agent("tooling").session(f"{TENANT}:{unique_id}")
    for text in ("make a file and read it", "again"):
        sent = await cli("send", unique_id, text)
        assert sent.code == 0, sent
    history = await session.history()
    assert len(history) == 4

    # export: the history as UIMessages, as the gateway serves them.
    exported = await cli("export", unique_id)
    assert exported.code == 0, exported.err
    document = json.loads(exported.out)
    assert document["sessionId"] == unique_id
    assert (document["agent"], document["tenant"]) == ("tooling", TENANT)
    assert document["workflowId"] == session.workflow_id
    assert document["messages"] == to_ui_messages(history)

    # The same session by its workflow id (what the Temporal UI shows), for any command.
    by_workflow = await cli("export", session.workflow_id)
    assert json.loads(by_workflow.out)["messages"] == document["messages"], by_workflow.err

    # history --ids shows what rewind takes; rewind keeps up to that message.
    listed = await cli("history", unique_id, "--ids")
    assert all(f"[{m.id}]" in listed.out for m in history), listed.out
    rewound = await cli("rewind", unique_id, history[1].id, "--yes")
    assert rewound.code == 0, rewound
    assert rewound.out == (
        f"Rewound session {unique_id}: dropped 2 message(s); the last is now "
        f"{history[1].id} (assistant)\n"
    )
    assert [m.id for m in await session.history()] == [m.id for m in history[:2]]
    missing = await cli("rewind", unique_id, "msg-nope", "--yes")
    assert missing.code == 2 and f"sessionflow history {unique_id} --ids" in missing.err

    # tail takes the session id like every other command.
    tailing = await cli.start("tail", unique_id, "--json")
    assert tailing.stdout is not None
    seen = bytearray()
    answer = await session.send("once more")
    await read_until(tailing.stdout, '"type": "finish"', seen)
    assert (await answer.outcome).status is TurnStatus.FINISHED
    # ... and stops by itself once the session ends.
    await session.close()
    rest, _ = await asyncio.wait_for(tailing.communicate(), 30)
    assert tailing.returncode == 0
    events = [json.loads(line) for line in (seen + rest).decode().splitlines()]
    assert events[-1]["chunk"]["type"] == "data-session-end", events[-1]
    assert {e["message_id"] for e in events[:-1]} == {answer.assistant_message_id}

    deleted = await cli("delete", unique_id, "--yes")
    assert (deleted.code, deleted.out) == (0, f"Deleted session {unique_id}\n"), deleted
    assert not await session.exists()
    gone = await cli("history", unique_id)
    assert gone.code == 1
    assert gone.err.startswith(
        f"Error: no session {unique_id!r} of agent 'tooling' under tenant 'acme' (session id "
        f"'acme:{unique_id}', workflow id 'session:tooling:acme:{unique_id}');"
    ), gone.err
    assert f"client.agent('tooling').session('acme:{unique_id}')" in gone.err


async def test_session_not_found_names_where_it_looked_and_what_was_meant(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([tool_agent, streaming_agent])
    cli = Cli(stack, task_queue)
    sent = await cli("send", unique_id, "hi", "--agent", "streamer")
    assert sent.code == 0, sent

    # The full id, as Python knows it: the CLI adds the tenant itself.
    doubled = await cli("history", f"{TENANT}:{unique_id}", "--agent", "streamer")
    assert doubled.code == 1
    assert f"name the session {unique_id!r}, not 'acme:{unique_id}'" in doubled.err, doubled.err
    # Another agent's session of that id: the command that reaches it.
    elsewhere = await cli("inspect", unique_id, "--agent", "tooling")
    assert elsewhere.code == 1
    assert (
        f"there is a session of agent 'streamer': sessionflow inspect {unique_id} --agent "
        "streamer" in elsewhere.err
    ), elsewhere.err
    # Without the tenant, the CLI looks for the bare id: it says so, and where it is.
    bare = await cli("history", unique_id, "--agent", "streamer", "--tenant", "")
    assert bare.code == 1
    assert f"no session {unique_id!r} of agent 'streamer' under no tenant" in bare.err
    assert (
        f"there is a session of agent 'streamer': sessionflow history acme:{unique_id} "
        "--agent streamer --tenant ''" in bare.err
    ), bare.err
    assert await client.agent("streamer").session(f"{TENANT}:{unique_id}").exists()


async def test_export_is_what_the_ai_sdk_validates_as_ui_messages(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    from tests.test_ai_sdk_compat import install_ai_sdk

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    client = await start_worker([tool_agent])
    cli = Cli(stack, task_queue)
    await until_served(client, task_queue, {"tooling"})
    assert (await cli("send", unique_id, "make a file and read it")).code == 0
    exported = await cli("export", unique_id)
    folder = install_ai_sdk("7")
    script = Path(folder) / "validate.mjs"
    script.write_text(
        'import { readFileSync } from "node:fs";\n'
        'import { validateUIMessages } from "ai";\n'
        'const { messages } = JSON.parse(readFileSync(0, "utf8"));\n'
        "const valid = await validateUIMessages({ messages });\n"
        "process.stdout.write(String(valid.length));\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=folder,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(exported.out.encode()), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode() == "2"
