"""Tools from MCP servers: listed for each step, called as ordinary tool activities.

The servers are real ones built with the MCP SDK's own `MCPServer` (FastMCP): a stdio
server the client starts as a subprocess (`tests/mcp_stdio_server.py`) and a
streamable-HTTP server on a loopback port (`tests/mcp_http_server.py`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sessionflow.agents import MCPServerHTTP, MCPServerStdio, close_mcp_connections
from sessionflow.agents.context import AgentContext
from sessionflow.agents.definition import agent
from sessionflow.agents.mcp_tools import toolset
from sessionflow.agents.tools import Tool, ToolContext, tool
from sessionflow.client.session import SendResult
from sessionflow.contract import ActivitySettings, SessionStatus, TurnStatus
from sessionflow.errors import MCPServerRefused, MCPServerUnavailable
from sessionflow.messages import ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.streams.reader import StreamEvent
from tests.conftest import StartWorker
from tests.mcp_http_server import API_KEY, HttpMCP
from tests.mcp_recording_model import RecordingProvider

CALC = Path(__file__).with_name("mcp_stdio_server.py")


def calc_server(log: Path, *extra_args: str, **options: Any) -> MCPServerStdio:
    return MCPServerStdio(
        "calc",
        command=sys.executable,
        args=[str(CALC), *extra_args],
        env={"CALC_LOG": str(log)},
        **options,
    )


def call(name: str, **arguments: Any) -> ScriptedToolCall:
    return ScriptedToolCall(tool=name, input=arguments)


def ran(log: Path) -> list[str]:
    """The calls the stdio server logged as run."""
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def tool_context() -> ToolContext:
    return ToolContext(session_id="s", tool_call_id="call-1", sandbox=None, messages=[])  # type: ignore[arg-type]


async def run(found: Tool[Any] | None, **arguments: Any) -> Any:
    assert found is not None
    return await found.execute(found.input_schema.model_validate(arguments), tool_context())


def view() -> AgentContext:
    return AgentContext(session_id="s", messages=[], context=None, state=None)


class Note(BaseModel):
    text: str


async def _keep(args: Note, _: Any) -> str:
    return f"kept {args.text}"


keep_tool = tool("keep", "Keep a note", input_schema=Note, execute=_keep)


@pytest.fixture(autouse=True)
async def _close_servers() -> AsyncIterator[None]:
    """Each test's server processes end with it."""
    yield
    await close_mcp_connections()


async def until_approval(result: SendResult) -> tuple[list[StreamEvent], str]:
    seen: list[StreamEvent] = []
    async for event in result.stream():
        seen.append(event)
        if event.type == "tool-approval-request":
            return seen, event.chunk.approval_id  # type: ignore[attr-defined]
    raise AssertionError("no approval request")


async def test_the_model_is_offered_a_stdio_servers_tools_beside_local_ones_and_calls_them(
    start_worker: StartWorker, unique_id: str, tmp_path: Path
) -> None:
    script = Script(
        name=f"mcp-calc-{unique_id}",
        delay=0,
        turns=[
            [
                ScriptStep(text="Adding.", tool_calls=[call("calc__add", a=2, b=3)]),
                ScriptStep(text="Counting.", tool_calls=[call("calc__count", to=3)]),
                ScriptStep(text="Done: {last_tool_output}."),
            ]
        ],
    )
    model = RecordingProvider([script])
    calc = agent(
        "mcp-calc",
        model=f"recorded/{script.name}",
        tools=[keep_tool],
        mcp_servers=[calc_server(tmp_path / "calc.log")],
    )
    client = await start_worker([calc], providers=[model])
    result = await client.agent("mcp-calc").session(unique_id).send("add 2 and 3, then count")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED

    # Every step offered the local tool and the server's, with the server's own schemas.
    assert len(model.requests) == 3
    for request in model.requests:
        assert [t.name for t in request.tools] == [
            "keep", "calc__add", "calc__fail", "calc__pid", "calc__delete_note", "calc__count",
        ]  # fmt: skip
    offered = {t.name: t for t in model.requests[0].tools}
    assert offered["calc__add"].description == "Add two integers."
    assert offered["calc__add"].input_schema["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert offered["calc__add"].input_schema["required"] == ["a", "b"]
    assert offered["keep"].input_schema["required"] == ["text"]

    # The calls ran on the server (its env reached it) and their output is in the
    # stream, with the server's progress reports as preliminary output, and in history.
    assert ran(tmp_path / "calc.log") == ["add 2 3"]
    outputs = [e.chunk for e in events if e.type == "tool-output-available"]
    final = [c.output for c in outputs if not c.preliminary]  # type: ignore[attr-defined]
    assert final == [{"result": 5}, {"result": "counted to 3"}]
    progress = [c.output for c in outputs if c.preliminary]  # type: ignore[attr-defined]
    assert progress == [
        {"progress": float(n), "total": 3.0, "message": f"at {n}"} for n in (1, 2, 3)
    ]
    reply = (await client.agent("mcp-calc").session(unique_id).history())[-1]
    added, counted = reply.tool_parts()
    assert (added.tool_name, added.state, added.output) == (
        "calc__add",
        ToolState.OUTPUT_AVAILABLE,
        {"result": 5},
    )
    assert counted.output == {"result": "counted to 3"}
    assert reply.text().endswith('Done: {"result": "counted to 3"}.')


async def test_errors_of_mcp_tools_are_tool_errors_the_model_reads(
    start_worker: StartWorker, unique_id: str, tmp_path: Path
) -> None:
    script = Script(
        name=f"mcp-errors-{unique_id}",
        delay=0,
        turns=[
            [
                ScriptStep(
                    tool_calls=[
                        call("calc__fail", reason="not today"),
                        call("calc__add", a="two", b=3),
                        call("calc__divide", a=1, b=0),
                    ]
                ),
                ScriptStep(text="I read: {last_tool_output}"),
            ]
        ],
    )
    calc = agent("mcp-errors", model=script, mcp_servers=[calc_server(tmp_path / "calc.log")])
    client = await start_worker([calc])
    session = client.agent("mcp-errors").session(unique_id)
    result = await session.send("try these")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED

    reply = (await session.history())[-1]
    failed, invalid, unknown = reply.tool_parts()
    assert all(p.state is ToolState.OUTPUT_ERROR for p in (failed, invalid, unknown))
    # The server's own error message (an `isError` result) reaches the model.
    assert failed.error_text is not None and "refused: not today" in failed.error_text
    # Arguments that fail the tool's JSON schema never reach the server.
    assert invalid.error_text is not None
    assert "invalid input for calc__add" in invalid.error_text
    assert "'two' is not of type 'integer'" in invalid.error_text
    assert ran(tmp_path / "calc.log") == []
    # A name in the server's namespace that it does not offer says what is offered.
    assert unknown.error_text is not None
    assert "tool 'calc__divide' is not available in this step" in unknown.error_text
    assert "calc__add" in unknown.error_text
    errors = [e.chunk for e in events if e.type == "tool-output-error"]
    assert [c.error_text for c in errors] == [  # type: ignore[attr-defined]
        failed.error_text,
        invalid.error_text,
        unknown.error_text,
    ]
    assert reply.text() == f"I read: {unknown.error_text}"


async def test_a_gated_mcp_tool_waits_for_approval_and_a_denied_call_never_reaches_the_server(
    start_worker: StartWorker, unique_id: str, tmp_path: Path
) -> None:
    script = Script(
        name=f"mcp-gated-{unique_id}",
        delay=0,
        turns=[
            [
                ScriptStep(
                    tool_calls=[
                        call("calc__add", a=1, b=1),
                        call("calc__delete_note", title="groceries"),
                    ]
                ),
                ScriptStep(text="Done: {last_tool_output}"),
            ]
        ],
    )
    # The server gates one tool, by the name the server gives it.
    server = calc_server(tmp_path / "calc.log", needs_approval=["delete.note"])
    gated = agent("mcp-gated", model=script, mcp_servers=[server])
    client = await start_worker([gated])
    session = client.agent("mcp-gated").session(unique_id)
    result = await session.send("tidy up")
    events, approval_id = await until_approval(result)

    assert len([e for e in events if e.type == "tool-approval-request"]) == 1
    info = await session.info()
    assert info.status is SessionStatus.NEEDS_APPROVAL
    assert info.pending_approvals == [approval_id]
    free, risky = (await session.history())[-1].tool_parts()
    assert free.approval is None
    assert risky.state is ToolState.APPROVAL_REQUESTED
    assert "deleted groceries" not in ran(tmp_path / "calc.log")

    denied = await session.send(
        {
            "type": "approval",
            "approval": {"approval_id": approval_id, "approved": False, "reason": "keep it"},
        }
    )
    assert (await denied.outcome).status is TurnStatus.FINISHED
    free, risky = (await session.history())[-1].tool_parts()
    assert (free.state, free.output) == (ToolState.OUTPUT_AVAILABLE, {"result": 2})
    assert risky.state is ToolState.OUTPUT_DENIED
    assert ran(tmp_path / "calc.log") == ["add 1 1"]


async def test_an_approved_http_mcp_call_is_retried_until_the_server_is_back(
    start_worker: StartWorker, unique_id: str
) -> None:
    kb = HttpMCP()
    await kb.start()
    script = Script(
        name=f"mcp-http-{unique_id}",
        delay=0,
        turns=[
            [
                ScriptStep(text="Looking.", tool_calls=[call("kb__lookup", key="secret-plan")]),
                ScriptStep(text="Found: {last_tool_output}"),
            ]
        ],
    )
    model = RecordingProvider([script])
    server = MCPServerHTTP(
        "kb",
        url=kb.url,
        headers={"x-api-key": API_KEY},
        activity=ActivitySettings(initial_retry_interval=timedelta(seconds=1), max_attempts=10),
    )
    looker = agent(
        "mcp-http",
        model=f"recorded/{script.name}",
        mcp_servers=[server],
        # The agent's rule for an MCP tool reads the call's arguments as attributes.
        needs_approval={"kb__lookup": lambda args: args.key.startswith("secret")},
    )
    client = await start_worker([looker], providers=[model])
    session = client.agent("mcp-http").session(unique_id)
    try:
        result = await session.send("find the plan")
        _, approval_id = await until_approval(result)
        assert [t.name for t in model.requests[0].tools] == ["kb__lookup"]
        assert model.requests[0].tools[0].input_schema["required"] == ["key"]
        assert kb.calls == []

        # The server goes away while the call waits; the approved call cannot reach it.
        await kb.stop()
        approved = await session.send(
            {"type": "approval", "approval": {"approval_id": approval_id, "approved": True}}
        )
        seen: list[StreamEvent] = []
        async for event in approved.stream():
            seen.append(event)
            if event.type == "data-retry":
                break
        assert kb.calls == []
        await kb.start()  # back, on the same address

        assert (await approved.outcome).status is TurnStatus.FINISHED
        async for event in approved.stream():
            seen.append(event)
        retries = [e.chunk.data for e in seen if e.type == "data-retry"]  # type: ignore[attr-defined]
        assert retries and all(r["source"].startswith("tool:") for r in retries)
        # It ran once, with the configured header, and its output is in history.
        assert kb.calls == [{"key": "secret-plan"}]
        assert kb.keys_seen == {API_KEY}
        (part,) = (await session.history())[-1].tool_parts()
        assert part.state is ToolState.OUTPUT_AVAILABLE
        assert part.output == {"key": "secret-plan", "value": "value of secret-plan"}
    finally:
        await kb.stop()


async def test_a_worker_keeps_one_server_process_and_replaces_it_when_it_dies(
    tmp_path: Path,
) -> None:
    calc = toolset(calc_server(tmp_path / "calc.log", tools_cache_seconds=0))
    await calc.tools()
    first = await run(calc.tool("calc__pid"))
    assert await run(calc.tool("calc__pid")) == first  # one process, reused

    # A call on a session whose process died fails retryably (Temporal retries the
    # activity), and is not repeated at once: it may have reached the server.
    os.kill(first["result"], signal.SIGKILL)
    with pytest.raises(MCPServerUnavailable) as lost:
        for _ in range(50):  # until the client notices the process is gone
            await run(calc.tool("calc__pid"))
            await asyncio.sleep(0.05)
    assert lost.value.retryable
    second = await run(calc.tool("calc__pid"))  # a new process, as the retry gets
    assert second != first

    # A listing is safe to repeat: on a dead session it reconnects at once.
    os.kill(second["result"], signal.SIGKILL)
    await asyncio.sleep(0.3)
    assert "calc__pid" in [t.name for t in await calc.tools()]
    third = await run(calc.tool("calc__pid"))
    assert third not in (first, second)

    await close_mcp_connections()
    await asyncio.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(third["result"], 0)


async def test_a_call_reaching_a_worker_that_never_listed_the_server_lists_it_first(
    tmp_path: Path,
) -> None:
    calc = agent("mcp-cold", model="scripted/none", mcp_servers=[calc_server(tmp_path / "c.log")])
    add = calc.tool("calc__add")  # no I/O: found by its prefix
    assert add is not None and add.name == "calc__add"
    assert calc.tool("keep") is None and calc.tool("calc__") is None
    assert await run(add, a=20, b=22) == {"result": 42}
    # Now listed, the lookup has the server's schema and checks arguments with it.
    listed = calc.tool("calc__add")
    assert listed is not None and listed.json_schema()["required"] == ["a", "b"]
    with pytest.raises(ValueError, match="'b' is a required property"):
        listed.input_schema.model_validate({"a": 1})


async def test_listings_are_cached_for_a_while_and_servers_no_active_tool_needs_are_not_asked() -> (
    None
):
    kb = HttpMCP()
    await kb.start()
    try:
        server = MCPServerHTTP(
            "kb", url=kb.url, headers={"x-api-key": API_KEY}, tools_cache_seconds=0.5
        )
        # A server that would fail if it were ever started.
        broken = MCPServerStdio("broken", command="/nonexistent/mcp-server")
        both = agent(
            "mcp-cache", model="scripted/none", tools=[keep_tool], mcp_servers=[server, broken]
        )
        only_kb = agent(
            "mcp-active",
            model="scripted/none",
            tools=[keep_tool],
            mcp_servers=[server, broken],
            active_tools=["keep", "kb__lookup"],
        )
        names = [t.name for t in await only_kb.tools_for(view())]
        assert names == ["keep", "kb__lookup"]
        await only_kb.tools_for(view())
        assert kb.listings == 1  # cached
        await asyncio.sleep(0.6)
        await only_kb.tools_for(view())
        assert kb.listings == 2  # listed again once stale
        with pytest.raises(MCPServerRefused, match="cannot start '/nonexistent/mcp-server'"):
            await both.tools_for(view())
    finally:
        await kb.stop()


async def test_unreachable_servers_are_retried_and_misconfigured_ones_are_not(
    tmp_path: Path,
) -> None:
    kb = HttpMCP()  # not started: nothing listens on its port
    with pytest.raises(MCPServerUnavailable, match="'down'") as down:
        await toolset(MCPServerHTTP("down", url=kb.url, connect_timeout=5)).tools()
    assert down.value.retryable

    await kb.start()
    try:
        keyless = MCPServerHTTP("keyless", url=kb.url)
        with pytest.raises(MCPServerRefused, match="HTTP 401") as refused:
            await toolset(keyless).tools()
        assert not refused.value.retryable
    finally:
        await kb.stop()

    with pytest.raises(MCPServerRefused, match="both offered as 'calc__a_b'"):
        await toolset(calc_server(tmp_path / "c.log", "--clashing-names")).tools()
    crashing = MCPServerStdio(
        "crashing", command=sys.executable, args=["-c", "raise SystemExit(3)"]
    )
    with pytest.raises(MCPServerRefused, match="exited before it answered"):
        await toolset(crashing).tools()


def test_names_that_could_clash_are_refused_when_the_agent_is_defined(tmp_path: Path) -> None:
    server = calc_server(tmp_path / "c.log")
    clashing = tool("calc__add", "A local add", input_schema=Note, execute=_keep)
    with pytest.raises(ValueError, match=r"tools \['calc__add'\] clash with MCP server 'calc'"):
        agent("clash", model="scripted/x", tools=[clashing], mcp_servers=[server])
    with pytest.raises(ValueError, match="MCP server names used twice"):
        agent("twice", model="scripted/x", mcp_servers=[server, calc_server(tmp_path / "d")])
    with pytest.raises(ValueError, match="overlapping tool prefixes"):
        agent(
            "overlap",
            model="scripted/x",
            mcp_servers=[
                MCPServerStdio("a", command="x", prefix="docs_"),
                MCPServerStdio("b", command="x", prefix="docs_v2_"),
            ],
        )
    with pytest.raises(ValueError, match=r"needs_approval names unknown tools \['other'\]"):
        agent("gates", model="scripted/x", mcp_servers=[server], needs_approval={"other": True})
    gated = agent(
        "gated", model="scripted/x", mcp_servers=[server], needs_approval={"calc__add": True}
    )
    assert gated.needs_approval == {"calc__add": True}
    # Renamed by a prefix, the local tool and the server's no longer clash.
    agent(
        "renamed",
        model="scripted/x",
        tools=[clashing],
        mcp_servers=[calc_server(tmp_path / "c.log", prefix="remote_")],
    )
    with pytest.raises(ValueError, match="invalid MCP server name"):
        MCPServerStdio("has space", command="x")
    with pytest.raises(ValueError, match="url must start with http"):
        MCPServerHTTP("web", url="ftp://example.com")
    with pytest.raises(TypeError, match="a bool or a list of tool names"):
        MCPServerStdio("one", command="x", needs_approval="delete")  # type: ignore[arg-type]
    # Credentials stay out of reprs, and so out of logs.
    secret = MCPServerHTTP(
        "web", url="https://example.com/mcp", headers={"authorization": "Bearer s3cret"}
    )
    assert "s3cret" not in repr(secret)
    assert "s3cret" not in repr(MCPServerStdio("env", command="x", env={"TOKEN": "s3cret"}))
