"""A hostile model against the worker every tenant shares: huge trees and output floods.

The model obeys whatever reaches it, so it will List a tree of a million files, Grep
all of it, or run a command that prints control characters for ten minutes. The file
tools run in the worker (or bring their results into it) and a command's progress is
written to Redis, kept for a week: each must stop at its bounds, say that it did,
and still deliver what it owes. Sessions drive the tools where the bound is the
worker's (memory measured in this process, which runs the worker); the bounds'
details are checked on the backends directly.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from sessionflow.agents.builtin import builtin_tools, grep_tool, list_tool
from sessionflow.agents.builtin import files as file_tools
from sessionflow.agents.builtin import grep as grep_module
from sessionflow.agents.definition import agent
from sessionflow.agents.tools import Tool, ToolContext
from sessionflow.client.session import Session
from sessionflow.contract import TurnStatus
from sessionflow.ids import sandbox_owner
from sessionflow.messages import ToolPart, ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.sandbox import workspace_files
from sessionflow.sandbox.e2b import E2BSandboxBackend
from sessionflow.sandbox.local import LocalSandbox, LocalSandboxBackend
from sessionflow.streams.budget import StreamBudget, progress_key
from sessionflow.streams.keys import StreamKeys
from tests.conftest import StartWorker
from tests.fake_e2b import FakeE2B

# 50,000 empty files, 5,000 in each of ten nested directories (issue 23's attack had
# 400,000 and took the worker from 322 MiB to 1,388 MiB; this is big enough to matter).
TREE_FILES = 50_000
MAKE_TREE = (
    "d=t; for level in 0 1 2 3 4 5 6 7 8 9; do d=$d/level$level; mkdir -p $d; "
    "(cd $d && seq -f 'x%05g' 1 5000 | xargs touch); done; echo needle > t/level0/x00001"
)
# The same List before its bounds: 57 MiB traced for this tree, 1.6 s, 1 MB of output.
UNBOUNDED_LIST_MIB = 56


def step(tool: str, **arguments: Any) -> ScriptStep:
    return ScriptStep(tool_calls=[ScriptedToolCall(tool=tool, input=arguments)])


async def turn(session: Session, text: str) -> list[ToolPart]:
    result = await session.send(text)
    assert (await result.outcome).status is TurnStatus.FINISHED
    return (await session.history())[-1].tool_parts()


def output(part: ToolPart) -> Any:
    assert part.state is ToolState.OUTPUT_AVAILABLE, part.error_text
    return part.output


async def test_list_and_grep_over_a_huge_tree_stop_at_their_bounds(
    start_worker: StartWorker, unique_id: str
) -> None:
    script = Script(
        name="trees",
        delay=0,
        turns=[
            [step("Bash", command=MAKE_TREE, timeout=120), ScriptStep(text="made")],
            [step("List", path=".", depth=10), ScriptStep(text="listed")],
            [step("Grep", pattern="needle"), ScriptStep(text="searched")],
        ],
    )
    client = await start_worker([agent("trees", model=script, tools=builtin_tools())])
    session = client.agent("trees").session(unique_id)
    [made] = await turn(session, "make a tree")
    assert output(made)["exit_code"] == 0

    tracemalloc.start()
    try:
        started = time.monotonic()
        [listed] = await turn(session, "list it all")
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    listing = output(listed)
    lines = listing.splitlines()
    print(f"\nList over {TREE_FILES:,} files: peak +{peak / 2**20:.1f} MiB, {elapsed:.2f} s")
    assert lines[-1] == (
        "[truncated: listing stopped at 2,000 entries; list a subdirectory, or with a "
        "smaller depth]"
    )
    assert len(lines) == 2001 and lines[0] == "t/"
    # Depth first, each directory in name order, down to the tenth level (`t` is the first).
    assert lines[9] == "  " * 9 + "level8/" and lines[10] == "  " * 9 + "x00001 (0 B)"
    assert peak < 2**20 * UNBOUNDED_LIST_MIB / 4

    [searched] = await turn(session, "search it all")
    found = output(searched).splitlines()
    assert found[-1] == ("[Grep stopped after 20,000 files; narrow the search with path or glob]")


async def test_a_flood_of_output_streams_within_its_budget_and_the_result_still_arrives(
    start_worker: StartWorker, unique_id: str, redis: Redis
) -> None:
    # Control characters, each six bytes as JSON, on both streams for about 3 seconds:
    # issue 23's 30-second version wrote 14.5 MB to Redis.
    flood = (
        "for i in $(seq 1 60); do head -c 300 /dev/zero | tr '\\0' '\\1'; "
        "head -c 300 /dev/zero | tr '\\0' '\\2' >&2; sleep 0.05; done"
    )
    script = Script(
        name="flood",
        delay=0,
        turns=[[step("Bash", command=flood), step("Bash", command=flood), ScriptStep(text="ok")]],
    )
    budget = StreamBudget(per_call_bytes=24 * 1024, per_turn_bytes=32 * 1024)
    client = await start_worker(
        [agent("flood", model=script, tools=builtin_tools())], stream_budget=budget
    )
    session = client.agent("flood").session(unique_id)
    first, second = await turn(session, "flood")

    # The results are whole (up to the sandbox's cap), budget or not.
    for part in (first, second):
        result = output(part)
        assert result["exit_code"] == 0
        assert result["stdout"] == "\x01" * 18_000 and result["stderr"] == "\x02" * 18_000

    keys = StreamKeys.for_workflow(session.workflow_id)
    streamed: dict[str, int] = {}
    notices: dict[str, list[dict[str, Any]]] = {}
    largest = 0
    for _, fields in await redis.xrange(keys.chunks):
        chunk = json.loads(fields[b"chunk"])
        size = sum(len(k) + len(v) for k, v in fields.items())
        call = chunk.get("toolCallId") or chunk.get("data", {}).get("toolCallId")
        if chunk["type"] == "tool-output-available" and chunk.get("preliminary"):
            streamed[call] = streamed.get(call, 0) + size
            largest = max(largest, size)
        elif chunk["type"] == "data-tool-progress":
            notices.setdefault(call, []).append(chunk["data"])
    print(f"\nstreamed progress per call: {streamed}; largest entry {largest} B")
    ids = [first.tool_call_id, second.tool_call_id]
    assert set(streamed) == set(ids)
    assert streamed[ids[0]] <= budget.per_call_bytes
    assert sum(streamed.values()) <= budget.per_turn_bytes
    # Each update carries at most 4 KiB of JSON per stream, plus the chunk's envelope
    # and the entry's fields (the call's id twice among them).
    assert largest <= 2 * 4096 + 200 + 2 * len(ids[0])
    # Each call streamed until its share ran out, said so, then summed up what it held back.
    for call, limit in zip(ids, ("call", "turn"), strict=True):
        stopped, summary = notices[call]
        assert stopped["streaming"] == "stopped" and stopped["limit"] == limit
        assert summary["streaming"] == "summary" and summary["notStreamedBytes"] > 0
        assert summary["streamedBytes"] == streamed[call]
        assert "bytes of further output not streamed" in summary["text"]
    # The turn's count is in Redis, in the session's key space, with a lifetime.
    key = progress_key(session.workflow_id, (await session.history())[-1].id)
    assert int(await redis.get(key) or 0) == sum(streamed.values())
    assert await redis.ttl(key) > 0


# --- the bounds themselves, on the backends ----------------------------------------------


@pytest.fixture
async def sandbox(tmp_path: Path) -> LocalSandbox:
    return await LocalSandboxBackend(tmp_path / "sandboxes").create(owner=sandbox_owner(""))


async def call(tool: Tool[Any], sandbox: Any, **arguments: Any) -> Any:
    context = ToolContext(session_id="s", tool_call_id="c", sandbox=sandbox, messages=[])
    return await tool.execute(tool.input_schema.model_validate(arguments), context)


def make_files(root: Path, count: int, content: bytes = b"") -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"f{i:05d}").write_bytes(content)


async def test_list_stops_at_its_deadline_and_its_size(
    sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(sandbox.workspace / "a", 300)
    listing = await sandbox.list_files(".", 3, max_entries=10)
    assert (len(listing.entries), listing.cut) == (10, "entries")
    assert [e.path for e in listing.entries[:3]] == ["a", "a/f00000", "a/f00001"]
    assert workspace_files.list_entries(
        sandbox.workspace, ".", 3, max_entries=10, seconds=0
    ).cut == ("time")
    monkeypatch.setattr(file_tools, "LIST_SECONDS", 0.0)
    assert await call(list_tool(), sandbox) == (
        "[truncated: listing stopped after 0 seconds, with 0 entries; list a subdirectory, "
        "or with a smaller depth]"
    )
    monkeypatch.setattr(file_tools, "LIST_SECONDS", 5.0)
    monkeypatch.setattr(file_tools, "LIST_LIMIT_CHARS", 100)
    shown = (await call(list_tool(), sandbox)).splitlines()
    assert shown[-1].startswith("[truncated: listing stopped at 100 characters;")
    assert len("\n".join(shown[:-1])) <= 100


async def test_e2b_listing_is_bounded_in_the_vm(tmp_path: Path) -> None:
    fake = FakeE2B(tmp_path / "e2b")
    sandbox = await E2BSandboxBackend(sdk=fake, api_key=fake.valid_key).create(owner="t:")
    make_files(fake.home(sandbox.id) / "b", 3000, b"12345")
    make_files(fake.home(sandbox.id) / "a", 2)
    listing = await sandbox.list_files(".", 3, max_entries=100)
    assert (len(listing.entries), listing.cut) == (100, "entries")
    paths = [e.path for e in listing.entries]
    # Parents before what they hold, each directory in name order.
    assert paths.index("b") < paths.index(next(p for p in paths if p.startswith("b/")))
    assert next(e.size for e in listing.entries if e.path.startswith("b/")) == 5
    # E2B's own listing, which sends the whole tree back, is not used.
    assert all("find" in c for c in fake.sandboxes[sandbox.id].commands)
    whole = await sandbox.list_files("a", 1)
    assert ([e.path for e in whole.entries], whole.cut) == (["a/f00000", "a/f00001"], None)


async def test_grep_stops_at_its_byte_budget_and_its_deadline(
    sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grep_module, "MAX_BYTES", 1024 * 1024)
    for name in ("a", "b", "c"):
        (sandbox.workspace / name).write_text("needle\n" + "x" * 400_000 + "\n")
    found = (await call(grep_tool(), sandbox, pattern="needle")).splitlines()
    assert len([line for line in found if line.endswith(":1:needle")]) == 2
    assert found[-1] == (
        "[1 files were skipped: with them the search would read more than 1 MiB; narrow "
        "the search with path or glob]"
    )
    (sandbox.workspace / "big").write_text("x\n" * 1024 * 1024 + "needle\n")
    assert (await call(grep_tool(), sandbox, pattern="needle", path="big")).splitlines() == [
        "no matches",
        "[only the file's first 1 MiB were searched; narrow the search with path or glob]",
    ]

    # A pattern that backtracks for seconds on every line, in a directory and a file.
    monkeypatch.setattr(grep_module, "MAX_SECONDS", 1)
    (sandbox.workspace / "slow").mkdir()
    (sandbox.workspace / "slow" / "s.txt").write_text(("abcdefgh" * 8 + "\n") * 200)
    slow = "^(.*)(.*)(.*)(.*)\\4\\3\\2\\1$"
    for path in ("slow", "slow/s.txt"):
        started = time.monotonic()
        said = await call(grep_tool(), sandbox, pattern=slow, path=path)
        assert time.monotonic() - started < 5
        assert said.splitlines() == [
            "no matches",
            "[Grep stopped after 1 seconds; narrow the search with path or glob]",
        ]
