"""The README's Python blocks run here, as they stand, so the README cannot drift from
the code: an example that stops working fails CI.

Each block is marked `<!-- example:<name> -->` (or `<!-- walk:<name> -->`) just above
it. The agent, script and session blocks run against the real stack (the session block
against a fake of Anthropic's API, through the real `anthropic` SDK); the MCP block
builds its agent. `example:client` runs in `tests/test_packaging.py` and the
`walk:` blocks in `tests/test_newcomer.py`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sessionflow.cli.localstack import LocalStack
from sessionflow.client import default_client, use_client
from sessionflow.contract import TurnStatus
from sessionflow.messages import ToolPart
from sessionflow.providers.anthropic import AnthropicProvider
from tests.conftest import StartWorker
from tests.fake_anthropic import FakeAnthropic, answer
from tests.processes import REPO
from tests.serving import serving

README = (REPO / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- (example|walk):([\w-]+) -->\n)?( *)```python\n(.*?)\n\3```", re.S)
# Where each marked block runs, if not in this file.
RUN_ELSEWHERE = {
    "example:client": REPO / "tests" / "test_packaging.py",
    "walk:agents": REPO / "tests" / "test_newcomer.py",
    "example:compaction": REPO / "tests" / "test_context_window.py",
    "example:webhooks": REPO / "tests" / "test_webhooks.py",
    "example:schedules": REPO / "tests" / "test_schedules.py",
}
RUN_HERE = {"example:agent", "example:script", "example:session", "example:mcp"}


def blocks() -> list[tuple[str | None, str]]:
    """Every Python block in the README: (its mark or None, its code, dedented)."""
    found = []
    for kind, name, indent, code in BLOCK.findall(README):
        lines = [line.removeprefix(indent) for line in code.split("\n")]
        found.append((f"{kind}:{name}" if kind else None, "\n".join(lines)))
    return found


def example(mark: str) -> str:
    (code,) = [code for found, code in blocks() if found == mark]
    return code


def run(mark: str, namespace: dict[str, Any]) -> dict[str, Any]:
    exec(compile(example(mark), f"README.md <{mark}>", "exec"), namespace)
    return namespace


async def run_async(mark: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """A block with top-level `await`, as the README shows it, run on this event loop."""
    code = compile(
        example(mark), f"README.md <{mark}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    pending = eval(code, namespace)
    if pending is not None:
        await pending
    return namespace


def test_every_python_block_in_the_readme_is_run_by_a_test() -> None:
    marks = [mark for mark, _ in blocks()]
    assert len(marks) >= 6
    assert None not in marks, "a ```python block in README.md has no <!-- example:... --> mark"
    assert len(set(marks)) == len(marks), "two README blocks share a mark"
    for mark in marks:
        if mark in RUN_HERE:
            continue
        assert mark in RUN_ELSEWHERE, f"README block {mark} is run by no test"
        name = mark.split(":")[1]
        text = RUN_ELSEWHERE[mark].read_text()
        assert f"<!-- {mark} -->" in text or f'"{name}"' in text, (
            f"{RUN_ELSEWHERE[mark].name} does not run README block {mark}"
        )


def test_the_agent_block_defines_what_its_text_says() -> None:
    defined = run("example:agent", {})
    assistant = defined["assistant"]
    assert assistant.name == "assistant"
    assert [t.name for t in assistant.tools] == ["add_note", "Bash"]
    assert assistant.context_schema is defined["Caller"]
    assert assistant.state_schema is defined["Notes"]


async def test_the_script_block_serves_a_tool_turn(
    start_worker: StartWorker, unique_id: str
) -> None:
    greeter = run("example:script", {})["greeter"]
    client = await start_worker([greeter])
    session = client.agent("greeter").session(unique_id)
    result = await session.send("what's there?")
    assert await result.done is True
    assert (await result.outcome).status is TurnStatus.FINISHED
    (answer_message,) = (await session.history())[1:]
    (call,) = [p for p in answer_message.parts if isinstance(p, ToolPart)]
    assert call.tool_name == "Bash" and call.input == {"command": "ls"}
    assert call.output is not None and call.output["exit_code"] == 0
    assert answer_message.text().startswith("Let me check.")
    assert "Your workspace holds:" in answer_message.text()


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    api = FakeAnthropic()
    async with serving(api.app) as api.url:
        yield api


async def test_the_session_block_runs_as_written(
    start_worker: StartWorker,
    fake_anthropic: FakeAnthropic,
    stack: LocalStack,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    defined = run("example:agent", {})
    provider = AnthropicProvider(api_key="sk-ant-test", base_url=fake_anthropic.url)
    await start_worker([defined["assistant"]], providers=[provider])
    fake_anthropic.push(answer("Your workspace is empty."), answer("Next, then."))
    # What `SessionClient.connect()` and `assistant.session(...)` read.
    monkeypatch.setenv("TEMPORAL_ADDRESS", stack.config.temporal_address)
    monkeypatch.setenv("REDIS_URL", stack.config.redis_url)
    monkeypatch.setenv("SESSIONFLOW_TASK_QUEUE", task_queue)
    monkeypatch.setenv("SESSIONFLOW_PAYLOAD_STORE", stack.config.payload_store)
    try:
        ran = await run_async("example:session", defined)
        # The rewind at the end left the first exchange only.
        session = ran["client"].agent("assistant").session(ran["session"].id)
        after_rewind = await session.history()
    finally:
        if "client" in defined:
            await defined["client"].close()
        await (await default_client()).close()
        use_client(None)

    printed = capsys.readouterr().out.splitlines()
    history = ran["history"]
    first = history[1]
    assert printed[0] == first.id  # assistant_message_id, known at once
    assert any("'type': 'text-delta'" in line for line in printed[1:])
    assert ran["finished"] is True and ran["outcome"].status is TurnStatus.FINISHED
    assert [m.text() for m in history] == [
        "What's in my workspace?", "Your workspace is empty.", "next", "Next, then."
    ]  # fmt: skip
    # The agent's system prompt saw the context the block sent.
    assert fake_anthropic.requests[0].body["system"][0]["text"] == "You are helping ada."
    assert ran["result"].exit_code == 0 and ran["sandbox_id"] is not None
    assert ran["state"] == defined["Notes"](count=0)
    assert [s.message_id for s in ran["report"].steps] == [first.id, history[3].id]
    assert [m.id for m in after_rewind] == [m.id for m in history[:2]]


def test_the_mcp_block_builds_its_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-test-token")
    assistant = run("example:mcp", {})["assistant"]
    files, github = assistant.mcp_servers
    assert (files.name, files.command, github.name) == ("files", "npx", "github")
    assert github.headers == {"Authorization": "Bearer ghp-test-token"}
