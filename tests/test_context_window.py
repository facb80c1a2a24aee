"""Conversations longer than the model's window (issue 26), through the public API.

A session whose conversation adds up to far more than the window keeps answering:
it compacts (old tool results cleared, old turns summarised), announces it on the
stream, and `history()` still returns every message word for word. A message too large
for any compaction fails its own turn at once, naming its size and the window, and the
next turn works. Against the scripted model with a small window (fast), and against a
fake Anthropic API that enforces a 200k-token window as the real one does.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from sessionflow import Compaction, agent, tool
from sessionflow.agents.tools import ToolContext
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.messages import DataPart, Role, ToolPart
from sessionflow.providers.anthropic import AnthropicProvider
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.conftest import StartWorker
from tests.fake_anthropic import FakeAnthropic
from tests.serving import serving

OUTPUT = 6_000  # characters of each tool result: 1,500 tokens
ASK = 4_000  # characters of each user message: 1,000 tokens


class Dump(BaseModel):
    turn: int


async def _dump(args: Dump, ctx: ToolContext) -> str:
    del ctx
    return (f"turn {args.turn} output " * OUTPUT)[:OUTPUT]


dump = tool("dump", "Print a lot", input_schema=Dump, execute=_dump)

LONG = Script(
    name="long-chat",
    delay=0.0,
    chunk_size=200,
    turns=[
        [
            ScriptStep(tool_calls=[ScriptedToolCall(tool="dump", input={"turn": 0})]),
            ScriptStep(text="Turn {turn}: done; I see {message_count} messages."),
        ]
    ],
)
# An 8,000-token window: twelve turns of 2,500 tokens each add up to almost four.
long_chat = agent(
    "long-chat",
    model=LONG,
    tools=[dump],
    context_window=8_000,
    compaction=Compaction(keep_tool_results=1, max_summary_tokens=200),
)
strict_chat = agent("strict-chat", model=LONG, tools=[dump], context_window=8_000, compaction=False)


@pytest.mark.parametrize(
    ("ask", "stage"),
    [(ASK, "summary"), (10, "clear")],
    ids=["long messages: old turns summarised", "long tool output: old results cleared"],
)
async def test_a_conversation_far_past_the_window_keeps_answering_and_keeps_history(
    start_worker: StartWorker, unique_id: str, ask: int, stage: str
) -> None:
    client = await start_worker([long_chat])
    session = client.agent("long-chat").session(unique_id)
    turns = 12
    announced: list[dict[str, object]] = []
    for turn in range(1, turns + 1):
        result = await session.send(f"turn {turn}: " + "x" * ask)
        events = [e async for e in result.stream()]
        outcome = await result.outcome
        assert outcome.status is TurnStatus.FINISHED, (turn, outcome)
        announced += [e.chunk.to_wire() for e in events if e.type == "data-compaction"]
        # The model is told of every turn, summarised or not.
        assert events[-1].type == "finish"
    history = []
    while page := await session.history(offset=len(history), limit=10):
        history.extend(page)
    assert [m.role for m in history] == [Role.USER, Role.ASSISTANT] * turns
    for n, reply in enumerate(history[1::2], start=1):
        assert reply.text() == f"Turn {n}: done; I see {2 * n} messages.", n
        [call] = [p for p in reply.parts if isinstance(p, ToolPart)]
        assert len(call.output) == OUTPUT  # history keeps every word
    assert all(len(m.text()) > ask for m in history[0::2])

    kept = [p for m in history for p in m.parts if isinstance(p, DataPart)]
    stages = [p.data["stage"] for p in kept if p.type == "data-compaction"]
    assert stage in stages, stages
    assert all(p.data["status"] == "end" for p in kept)
    summaries = [p.data for p in kept if p.data["stage"] == "summary"]
    assert all(s["summary"].startswith("Summary of the conversation") for s in summaries)
    # Each compaction streamed once as it started and once as it ended.
    assert [c["data"]["status"] for c in announced] == ["start", "end"] * len(kept)  # type: ignore[index]
    usage = await session.usage()
    assert max(s.usage.input_tokens for s in usage.steps) < 8_000


async def test_a_giant_message_fails_its_turn_at_once_and_the_next_turn_works(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([strict_chat])
    session = client.agent("strict-chat").session(unique_id)
    first = await (await session.send("hello")).outcome
    assert first.status is TurnStatus.FINISHED
    giant = await (await session.send("y" * 100_000)).outcome
    assert giant.status is TurnStatus.FAILED
    assert giant.error_type == "ContextTooLarge"
    found = re.search(r"about (\d+) tokens, .* window of 8000 tokens", giant.error or "")
    assert found is not None and int(found[1]) > 25_000, giant.error
    after = await (await session.send("and now?")).outcome
    assert after.status is TurnStatus.FINISHED
    history = await session.history()
    assert len(history) == 6
    assert history[3].parts == [] or history[3].metadata["excludedFromContext"] is True  # type: ignore[index]
    # The model saw the conversation without the giant turn: two turns before this one.
    assert history[5].text() == "Turn 2: done; I see 4 messages."


# -- against a fake Anthropic API with a 200k window ------------------------------------


@pytest.fixture
async def anthropic_api() -> AsyncIterator[FakeAnthropic]:
    api = FakeAnthropic()
    async with serving(api.app) as api.url:
        yield api


claude = agent("claude-long", model="anthropic/claude-sonnet-4-6")


def text_file(characters: int) -> dict[str, object]:
    """A message with a text file of `characters` characters (sent inline, as a
    document): a message is at most 256 KiB, a file 5 MB."""
    data = base64.b64encode(b"w" * characters).decode()
    return {
        "role": "user",
        "parts": [
            {"type": "text", "text": "Read this."},
            {"type": "file", "mediaType": "text/plain", "url": f"data:text/plain;base64,{data}"},
        ],
    }


async def test_on_a_200k_window_a_longer_conversation_keeps_answering(
    start_worker: StartWorker, anthropic_api: FakeAnthropic, unique_id: str
) -> None:
    provider = AnthropicProvider(api_key="sk-ant-test", base_url=anthropic_api.url)
    client: SessionClient = await start_worker([claude], providers=[provider])
    session = client.agent("claude-long").session(unique_id)
    turns = 10  # 40k tokens each: 400k in all
    for turn in range(1, turns + 1):
        outcome = await (await session.send(f"part {turn}: " + "z" * 160_000)).outcome
        assert outcome.status is TurnStatus.FINISHED, (turn, outcome)
    assert anthropic_api.refused_too_long == 0
    assert max(anthropic_api.prompt_tokens) <= 200_000
    summaries = [
        r for r in anthropic_api.requests if "compact a conversation" in str(r.body.get("system"))
    ]
    assert summaries, "no summary was asked for"
    # Steps after it send the summary (the fake's answer) in place of the early turns.
    last = anthropic_api.requests[-1].body["messages"][0]["content"][0]["text"]
    assert last.startswith("[A summary of the earlier conversation") and "(no scripted" in last
    history = await session.history()
    assert len(history) == 2 * turns
    assert all(len(m.text()) > 160_000 for m in history[0::2])

    # A message larger than the window fails its turn without a request; the next works.
    sent = len(anthropic_api.requests)
    giant = await (await session.send(text_file(1_000_000))).outcome
    assert giant.status is TurnStatus.FAILED and giant.error_type == "ContextTooLarge"
    assert "200000" in (giant.error or "")
    assert len(anthropic_api.requests) == sent
    after = await (await session.send("still there?")).outcome
    assert after.status is TurnStatus.FINISHED


async def test_the_fake_api_refuses_a_prompt_over_its_window_as_the_real_one_does(
    start_worker: StartWorker, anthropic_api: FakeAnthropic, unique_id: str
) -> None:
    """An agent that claims a larger window than the model has: the API refuses, and
    the turn fails with the API's own words; the next turn, without it, works."""
    provider = AnthropicProvider(api_key="sk-ant-test", base_url=anthropic_api.url)
    wide = agent("claude-wide", model="anthropic/claude-sonnet-4-6", context_window=10**7)
    client = await start_worker([wide], providers=[provider])
    session = client.agent("claude-wide").session(unique_id)
    outcome = await (await session.send(text_file(1_000_000))).outcome
    assert outcome.status is TurnStatus.FAILED and outcome.error_type == "ContextTooLarge"
    assert "prompt is too long: 250" in (outcome.error or "")
    assert "> 200000 maximum" in (outcome.error or "")
    assert anthropic_api.refused_too_long == 1
    after = await (await session.send("small")).outcome
    assert after.status is TurnStatus.FINISHED
    assert anthropic_api.refused_too_long == 1


def test_the_readme_compaction_block_sets_what_its_text_says() -> None:
    """README.md's <!-- example:compaction --> block."""
    from tests.test_readme_examples import run

    defined = run("example:compaction", {})
    assert defined["assistant"].compaction == Compaction(threshold=0.8, target=0.5)
    assert defined["scripted"].context_window == 32_000
    assert defined["scripted"].compaction == Compaction()
    assert defined["never"].compaction is None
