"""Read, Write, Edit, Grep, List and Bash, as a model calls them, in the local sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sessionflow.agents.builtin import builtin_tools
from sessionflow.agents.definition import agent
from sessionflow.contract import TurnStatus
from sessionflow.messages import ToolPart, ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.streams.reader import StreamEvent
from tests.conftest import StartWorker


def calls(*steps: tuple[str, dict[str, Any]]) -> Script:
    return Script(
        name="toolbox",
        delay=0,
        turns=[
            [
                *(ScriptStep(tool_calls=[ScriptedToolCall(tool=t, input=i)]) for t, i in steps),
                ScriptStep(text="done"),
            ]
        ],
    )


async def run(
    start_worker: StartWorker, session_id: str, *steps: tuple[str, dict[str, Any]]
) -> tuple[list[ToolPart], list[StreamEvent]]:
    toolbox = agent("toolbox", model=calls(*steps), tools=builtin_tools())
    client = await start_worker([toolbox])
    session = client.agent("toolbox").session(session_id)
    result = await session.send("go")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    return (await session.history())[-1].tool_parts(), events


async def test_write_read_edit_grep_and_list(start_worker: StartWorker, unique_id: str) -> None:
    program = "def greet(name):\n    return 'Hello, ' + name\n\nprint(greet('World'))\n"
    parts, _ = await run(
        start_worker, unique_id,
        ("Write", {"path": "src/app.py", "content": program}),
        ("Write", {"path": "README.md", "content": "# Hello\nhello again\n"}),
        ("Read", {"path": "src/app.py", "offset": 2, "limit": 1}),
        ("Edit", {"path": "src/app.py", "old_string": "'Hello, '", "new_string": "'Hi, '"}),
        ("Edit", {"path": "src/app.py", "old_string": "missing text", "new_string": "x"}),
        ("Write", {"path": "twice.txt", "content": "a a"}),
        ("Edit", {"path": "twice.txt", "old_string": "a", "new_string": "b"}),
        ("Grep", {"pattern": "hello", "case_sensitive": False, "glob": "*.md"}),
        ("Grep", {"pattern": "greet\\(", "path": "src", "context": 1}),
        ("Grep", {"pattern": "nowhere"}),
        ("List", {"path": ".", "depth": 2}),
        ("Bash", {"command": "python3 src/app.py"}),
    )  # fmt: skip
    outputs = [p.output if p.state is ToolState.OUTPUT_AVAILABLE else p.error_text for p in parts]
    assert outputs[0] == {"path": "src/app.py", "bytes": len(program)}
    assert (
        outputs[2]
        == "     2\t    return 'Hello, ' + name\n[truncated: showing lines 2-2 of 4; read more with offset=3]"
    )
    assert outputs[3] == {"path": "src/app.py", "replacements": 1}
    assert parts[4].state is ToolState.OUTPUT_ERROR
    assert "old_string was not found in src/app.py" in outputs[4]
    assert "occurs 2 times in twice.txt" in outputs[6]
    assert outputs[7] == "README.md:1:# Hello\nREADME.md:2:hello again"
    assert "src/app.py:1:def greet(name):" in outputs[8] and "src/app.py-2-" in outputs[8]
    assert outputs[9] == "no matches"
    assert outputs[10].splitlines() == [
        "README.md (20 B)", "src/", f"  app.py ({len(program) - 3} B)", "twice.txt (3 B)",
    ]  # fmt: skip
    assert outputs[11]["stdout"] == "Hi, World\n"


async def test_file_tools_refuse_paths_outside_the_workspace(
    start_worker: StartWorker, unique_id: str, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("secret")
    parts, _ = await run(
        start_worker, unique_id,
        ("Read", {"path": "../../outside.txt"}),
        ("Read", {"path": str(secret)}),
        ("Write", {"path": "../escape.txt", "content": "x"}),
        ("Bash", {"command": f"ln -s {tmp_path} link"}),
        ("Read", {"path": "link/outside.txt"}),
        ("List", {"path": "link"}),
        ("Grep", {"pattern": "secret", "path": "../"}),
    )  # fmt: skip
    errors = [p.error_text or "" for p in parts]
    assert "SandboxRefused" in errors[0] and "leads outside the workspace" in errors[0]
    assert "is absolute" in errors[1]
    assert "leads outside the workspace" in errors[2]
    assert parts[3].state is ToolState.OUTPUT_AVAILABLE
    assert "leads outside the workspace" in errors[4]
    assert "leads outside the workspace" in errors[5]
    assert "leads outside the workspace" in errors[6]
    assert not (tmp_path / "escape.txt").exists()


async def test_a_large_file_is_read_in_pages(start_worker: StartWorker, unique_id: str) -> None:
    parts, _ = await run(
        start_worker, unique_id,
        ("Bash", {"command": "seq 1 5000 > big.txt"}),
        ("Read", {"path": "big.txt"}),
        ("Read", {"path": "big.txt", "offset": 4999}),
    )  # fmt: skip
    first = parts[1].output
    assert first.splitlines()[0] == "     1\t1"
    assert (
        first.splitlines()[-1]
        == "[truncated: showing lines 1-2000 of 5000; read more with offset=2001]"
    )
    assert parts[2].output == "  4999\t4999\n  5000\t5000"


async def test_bash_streams_output_as_preliminary_results(
    start_worker: StartWorker, unique_id: str
) -> None:
    parts, events = await run(
        start_worker, unique_id,
        ("Bash", {"command": "for i in 1 2 3 4; do echo line $i; echo warn $i >&2; sleep 0.3; done; exit 3"}),
    )  # fmt: skip
    outputs = [e.chunk for e in events if e.type == "tool-output-available"]
    preliminary = [c for c in outputs if c.preliminary]  # type: ignore[attr-defined]
    assert len(preliminary) >= 2
    assert preliminary[0].output["stdout"].startswith("line 1")  # type: ignore[attr-defined]
    final = outputs[-1]
    assert not final.preliminary  # type: ignore[attr-defined]
    assert final.output["exit_code"] == 3  # type: ignore[attr-defined]
    assert final.output["stdout"] == "line 1\nline 2\nline 3\nline 4\n"  # type: ignore[attr-defined]
    assert final.output["stderr"] == "warn 1\nwarn 2\nwarn 3\nwarn 4\n"  # type: ignore[attr-defined]
    assert parts[0].state is ToolState.OUTPUT_AVAILABLE  # a non-zero exit is a result
