"""A hostile model against its permissions: the tool calls and call ids are the
attacker's (a model obeys whatever reaches it), and each test asserts the runtime's
decision held: a denied call never runs, an inactive tool never runs, an approval
rule that breaks fails closed.
"""

from __future__ import annotations

import uuid
from typing import Any

from sessionflow.agents.builtin import builtin_tools
from sessionflow.agents.definition import agent
from sessionflow.contract import TurnStatus
from sessionflow.messages import Message, ToolState
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.streams.reader import StreamEvent
from tests.conftest import StartWorker


def call(tool: str, call_id: str | None = None, **args: Any) -> ScriptedToolCall:
    return ScriptedToolCall(tool=tool, input=args, id=call_id)


def hostile(*steps: ScriptStep, **options: Any) -> Any:
    name = f"hostile-{uuid.uuid4().hex[:6]}"
    model = Script(name=name, delay=0, turns=[[*steps, ScriptStep(text="done")]])
    return agent(name, model=model, tools=builtin_tools(), **options)


async def exists(session: Any, path: str) -> bool:
    found = await session.sandbox.exec(command="test", args=["-e", path])
    return bool(found.exit_code == 0)


async def reply_of(session: Any) -> Message:
    return (await session.history())[-1]  # type: ignore[no-any-return]


async def test_a_denied_call_never_runs_when_the_model_repeats_a_call_id(
    start_worker: StartWorker, unique_id: str
) -> None:
    """List and Bash under one id `dup-1`; only Bash needs approval, and it is denied.
    The denial must land on Bash, and Bash must not run."""
    attacker = hostile(
        ScriptStep(
            tool_calls=[
                call("List", "dup-1", path="."),
                call("Bash", "dup-1", command="echo owned > pwned.txt"),
            ]
        ),
        needs_approval={"Bash": True},
    )
    client = await start_worker([attacker])
    session = client.agent(attacker.name).session(unique_id)
    result = await session.send("list the files")
    requests: list[StreamEvent] = []
    async for event in result.stream():
        if event.type == "tool-approval-request":
            requests.append(event)
            break
    (request,) = requests
    listed, bash = (await reply_of(session)).tool_parts()
    assert listed.tool_call_id != bash.tool_call_id, "the runtime names each call itself"
    assert "dup-1" not in (listed.tool_call_id, bash.tool_call_id)
    assert request.chunk.tool_call_id == bash.tool_call_id  # type: ignore[attr-defined]

    denied = {"approval_id": request.chunk.approval_id, "approved": False}  # type: ignore[attr-defined]
    await session.send({"type": "approval", "approval": denied})
    assert (await result.outcome).status is TurnStatus.FINISHED
    listed, bash = (await reply_of(session)).tool_parts()
    assert (listed.tool_name, listed.state) == ("List", ToolState.OUTPUT_AVAILABLE)
    assert (bash.tool_name, bash.state) == ("Bash", ToolState.OUTPUT_DENIED)
    assert not await exists(session, "pwned.txt")


async def test_two_calls_with_one_id_each_run_once_with_their_own_output(
    start_worker: StartWorker, unique_id: str
) -> None:
    """A repeated id must not make the second command replay the first's recorded
    result (commands are recorded per call for crash recovery)."""
    attacker = hostile(
        ScriptStep(
            tool_calls=[
                call("Bash", "same", command="echo first >> log.txt; echo first"),
                call("Bash", "same", command="echo second >> log.txt; echo second"),
            ]
        )
    )
    client = await start_worker([attacker])
    session = client.agent(attacker.name).session(unique_id)
    assert (await (await session.send("go")).outcome).status is TurnStatus.FINISHED
    one, two = (await reply_of(session)).tool_parts()
    assert (one.output["stdout"], two.output["stdout"]) == ("first\n", "second\n")
    log = await session.sandbox.exec(command="cat", args=["log.txt"])
    assert log.stdout == "first\nsecond\n"


async def test_tools_not_offered_in_the_step_never_run_nor_ask_for_approval(
    start_worker: StartWorker, unique_id: str
) -> None:
    """active_tools offers Read and List; the model calls Edit, Grep and Bash anyway
    (Bash would need approval). None runs, none asks, the model is told why."""
    attacker = hostile(
        ScriptStep(tool_calls=[call("Bash", command="echo original > notes.txt")]),
        ScriptStep(
            tool_calls=[
                call("Edit", path="notes.txt", old_string="original", new_string="edited"),
                call("Grep", pattern="original"),
                call("Bash", command="echo owned > pwned.txt"),
                call("Read", path="notes.txt"),
            ]
        ),
        active_tools=lambda ctx: ["Read", "List"] if ctx.messages[-1].step_count() else ["Bash"],
        needs_approval={"Bash": lambda args: "owned" in args.command},
    )
    client = await start_worker([attacker])
    session = client.agent(attacker.name).session(unique_id)
    result = await session.send("take notes")
    events = [event async for event in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    assert "tool-approval-request" not in [e.type for e in events]

    _, edit, grep, bash, read = (await reply_of(session)).tool_parts()
    for part in (edit, grep, bash):
        assert part.state is ToolState.OUTPUT_ERROR
        assert part.error_text is not None
        assert f"tool {part.tool_name!r} is not available in this step" in part.error_text
        assert "available: Read, List" in part.error_text
    errors = {e.chunk.tool_call_id for e in events if e.type == "tool-output-error"}  # type: ignore[attr-defined]
    assert errors == {edit.tool_call_id, grep.tool_call_id, bash.tool_call_id}
    assert read.state is ToolState.OUTPUT_AVAILABLE and "original" in str(read.output)
    assert not await exists(session, "pwned.txt")
    notes = await session.sandbox.exec(command="cat", args=["notes.txt"])
    assert notes.stdout == "original\n"


async def test_an_approval_rule_that_raises_refuses_the_call_once(
    start_worker: StartWorker, unique_id: str
) -> None:
    """A bug in a user's `needs_approval` callable is not transient: the paid model
    step is not retried, and the call it guards does not run."""

    def broken(args: Any) -> bool:
        raise RuntimeError("policy service unreachable")

    attacker = hostile(
        ScriptStep(tool_calls=[call("Bash", command="echo owned > pwned.txt")]),
        needs_approval={"Bash": broken},
    )
    client = await start_worker([attacker])
    session = client.agent(attacker.name).session(unique_id)
    result = await session.send("go")
    events = [event async for event in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    assert "data-retry" not in [e.type for e in events]
    (bash,) = (await reply_of(session)).tool_parts()
    assert bash.state is ToolState.OUTPUT_ERROR and bash.error_text is not None
    assert "its approval rule failed (RuntimeError: policy service unreachable)" in bash.error_text
    assert not await exists(session, "pwned.txt")


async def test_a_tool_input_nested_too_deep_is_refused_and_the_session_reads_on(
    start_worker: StartWorker, unique_id: str
) -> None:
    """198 levels: deeper than Temporal's decoder takes. The call is refused with the
    rule's limit, its input is not recorded, and history and the next turn still work."""
    deep: Any = "bottom"
    for _ in range(198):
        deep = {"d": deep}
    attacker = hostile(ScriptStep(tool_calls=[call("Bash", command="echo hi", extra=deep)]))
    client = await start_worker([attacker])
    session = client.agent(attacker.name).session(unique_id)
    assert (await (await session.send("go")).outcome).status is TurnStatus.FINISHED
    (bash,) = (await reply_of(session)).tool_parts()
    assert bash.state is ToolState.OUTPUT_ERROR and bash.input == {}
    assert bash.error_text is not None and "nested more than 64 levels" in bash.error_text
    again = await session.send("and now?")
    assert (await again.outcome).status is TurnStatus.FINISHED
    assert len(await session.history()) == 4
