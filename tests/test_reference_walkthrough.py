"""The reference Sessions page and VibeKit's session calls, top to bottom, in Python.

Each step is a call a user switching over would make, in the reference's order; the
README's "Coming from experimental-agent or VibeKit" table points here.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.client import use_client
from sessionflow.contract import SandboxStatus, TurnStatus
from sessionflow.errors import InvalidInput
from sessionflow.messages import Role
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.conftest import StartWorker


class Request(BaseModel):
    auth_token: str
    tenant_id: str | None = None


class Edits(BaseModel):
    files_edited: list[str] = Field(default_factory=list)


class Path_(BaseModel):
    path: str


async def _track_edit(args: Path_, ctx: ToolContext) -> dict[str, int]:
    ctx.state.files_edited.append(args.path)
    return {"tracked": len(ctx.state.files_edited)}


track_edit = tool("TrackEdit", "Remember an edited file", input_schema=Path_, execute=_track_edit)

SCRIPT = Script(
    name="reference",
    delay=0,
    turns=[
        [
            ScriptStep(tool_calls=[ScriptedToolCall(tool="TrackEdit", input={"path": "a.py"})]),
            ScriptStep(text="[{system}] tracked {last_tool_output}"),
        ],
        *[[ScriptStep(text="[{system}] you said {last_user_text}")]] * 3,
    ],
)


def system(ctx: Any) -> str:
    return f"You have edited {len(ctx.state.files_edited)} files so far."


my_agent = agent(
    "reference",
    model=SCRIPT,
    system=system,
    tools=[track_edit],
    context_schema=Request,
    state_schema=Edits,
)


async def test_the_reference_sessions_page_step_by_step(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([my_agent])
    use_client(client)
    try:
        # Creating a session: synchronous, a handle bound to the id, no network call.
        session = my_agent.session(unique_id)
        assert not await session.exists()

        # Sending messages, with context (validated by the context schema).
        context = {"auth_token": "Bearer t0ken"}
        result = await session.send("What files are in the project?", context=context)
        assert result.assistant_message_id.startswith("msg_")
        assert await result.done is True
        # Streaming: a stream after send is that answer's.
        events = [e async for e in session.stream()]
        assert events[0].type == "start" and events[-1].type == "finish"
        assert events[0].chunk.message_id == result.assistant_message_id  # type: ignore[attr-defined]

        # State: a tool changed it; options read it (the system prompt counts edits).
        assert await session.state() == Edits(files_edited=["a.py"])
        first = (await session.history())[1]
        assert first.text() == '[You have edited 1 files so far.] tracked {"tracked": 1}'

        # The other input forms of send.
        await (await session.send({"role": "user", "parts": [{"type": "text", "text": "Hello"}]},
                                  context=context)).done  # fmt: skip
        await (await session.send({"type": "message", "message": "Hi again"}, context=context)).done
        with pytest.raises(InvalidInput):
            await session.send("no context")  # the schema requires auth_token

        # History: messages and parts, oldest first.
        history = await session.history()
        assert [m.role for m in history] == [Role.USER, Role.ASSISTANT] * 3
        assert [m.text() for m in history[2::2]] == ["Hello", "Hi again"]
        assert history[5].text() == "[You have edited 1 files so far.] you said Hi again"

        # Interrupting with nothing running is harmless; usage counts every step.
        await session.interrupt()
        usage = await session.usage()
        assert len(usage.steps) == 4 and usage.total.total_tokens > 0

        # The sandbox: exec in the reference's one-object form, and its status.
        ran = await session.sandbox.exec({"command": "echo", "args": ["npm", "test"]})
        assert (ran.exit_code, ran.stdout) == (0, "npm test\n")
        assert await session.sandbox.get_status() is SandboxStatus.RUNNING

        # VibeKit: getSession() is the sandbox's id; setSession(id) is update(sandbox_id=).
        mine = await session.sandbox.get_id()
        other = my_agent.session(unique_id + "-other")
        await other.sandbox.exec("echo hers > hers.txt")
        theirs = await other.sandbox.get_id()
        assert mine and theirs and mine != theirs
        await session.update(sandbox_id=theirs)
        assert await session.sandbox.get_id() == theirs
        assert (await session.sandbox.exec("cat hers.txt")).stdout == "hers\n"

        # update(lastMessageId): the conversation goes back to that message.
        await session.update(last_message_id=history[1].id)
        assert [m.id for m in await session.history()] == [history[0].id, history[1].id]
        outcome = await (await session.send("again", context=context)).outcome
        assert outcome.status is TurnStatus.FINISHED
    finally:
        use_client(None)
