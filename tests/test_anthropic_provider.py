"""The Anthropic provider: the real `anthropic` SDK over HTTP against a local fake API."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.client.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.messages import MessageStatus, ReasoningPart, ToolState
from sessionflow.providers.anthropic import AnthropicProvider
from sessionflow.streams.assemble import assemble
from sessionflow.workflows import policies
from tests.conftest import StartWorker
from tests.fake_anthropic import (
    Failure,
    FakeAnthropic,
    Stream,
    answer,
    message_end,
    message_start,
    text_block,
    thinking_block,
    tool_block,
)
from tests.serving import serving

claude = agent(
    "claude",
    model="anthropic/claude-sonnet-4-6",
    system="You are a careful coding agent.",
    tools=[bash_tool()],
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    api = FakeAnthropic()
    async with serving(api.app) as api.url:
        yield api


@pytest.fixture
async def client(start_worker: StartWorker, fake: FakeAnthropic) -> SessionClient:
    provider = AnthropicProvider(
        api_key="sk-ant-test",
        base_url=fake.url,
        thinking_budget=1024,  # type: ignore[attr-defined]
    )
    return await start_worker([claude], providers=[provider])


def unmarked(value: Any) -> Any:
    """`value` without its prompt-cache breakpoints (`cache_control`)."""
    text = json.dumps(value).replace(', "cache_control": {"type": "ephemeral"}', "")
    return json.loads(text)


async def test_text_and_thinking_stream_and_usage_counts_cache_tokens(
    client: SessionClient, fake: FakeAnthropic, unique_id: str
) -> None:
    fake.push(
        Stream([
            message_start(input_tokens=40, cache_read=300, cache_write=120),
            *thinking_block(0, "The user greets me.", "sig-abc"),
            *text_block(1, "Hello! How can I help?"),
            *message_end("end_turn", output_tokens=12),
        ])
    )  # fmt: skip
    session = client.agent("claude").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED

    types = [e.type for e in events]
    assert "reasoning-delta" in types and "text-delta" in types
    assert types.index("reasoning-start") < types.index("text-start")
    reply = (await session.history())[-1]
    assert reply.text() == "Hello! How can I help?"
    (reasoning,) = [p for p in reply.parts if isinstance(p, ReasoningPart)]
    assert (reasoning.text, reasoning.signature) == ("The user greets me.", "sig-abc")
    usage = (await session.usage()).by_model["anthropic/claude-sonnet-4-6"]
    assert (usage.input_tokens, usage.output_tokens) == (40, 12)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (300, 120)

    (sent,) = fake.requests
    body = sent.body
    assert body["model"] == "claude-sonnet-4-6" and body["stream"] is True
    assert body["system"] == [
        {
            "type": "text",
            "text": "You are a careful coding agent.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][0]["name"] == "Bash"
    assert body["tools"][0]["input_schema"]["properties"]["command"]["type"] == "string"
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "sk-ant-test" in (
        sent.headers.get("x-api-key", "") + sent.headers.get("authorization", "")
    )
    assert sent.headers.get("x-stainless-retry-count", "0") == "0"


async def test_parallel_tool_calls_run_and_results_go_back_in_messages_api_shape(
    client: SessionClient, fake: FakeAnthropic, unique_id: str
) -> None:
    fake.push(
        Stream([
            message_start(),
            *thinking_block(0, "Two commands.", "sig-1"),
            *text_block(1, "Running both."),
            *tool_block(2, "toolu_a", "Bash", {"command": "echo one"}),
            *tool_block(3, "toolu_b", "Bash", {"command": "echo two; exit 4"}),
            *message_end("tool_use"),
        ]),
        answer("Both ran."),
    )  # fmt: skip
    session = client.agent("claude").session(unique_id)
    result = await session.send("run two things")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    first_call = [e.chunk.input_text_delta for e in events if e.type == "tool-input-delta"][:2]  # type: ignore[attr-defined]
    assert len(first_call) == 2 and "".join(first_call) == '{"command": "echo one"}'
    reply = (await session.history())[-1]
    one, two = reply.tool_parts()
    # The runtime names the calls (never the model's ids) and talks back with its names.
    assert (
        one.tool_call_id.startswith("call_") and "toolu" not in one.tool_call_id + two.tool_call_id
    )
    assert one.tool_call_id != two.tool_call_id and one.output["stdout"] == "one\n"
    assert (two.output["stdout"], two.output["exit_code"]) == ("two\n", 4)

    follow_up = fake.requests[1].body["messages"]
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"]
    assistant = follow_up[1]["content"]
    assert [b["type"] for b in assistant] == ["thinking", "text", "tool_use", "tool_use"]
    assert assistant[0]["signature"] == "sig-1"
    assert assistant[2] == {
        "type": "tool_use",
        "id": one.tool_call_id,
        "name": "Bash",
        "input": {"command": "echo one"},
    }
    results = follow_up[2]["content"]
    assert [r["tool_use_id"] for r in results] == [one.tool_call_id, two.tool_call_id]

    # Prompt caching: a moving breakpoint on the newest message (three in all), and each
    # request's prompt begins with the one before it, byte for byte but the markers.
    first, second = (r.body for r in fake.requests[:2])
    for body in (first, second):
        assert json.dumps(body).count('"cache_control"') == 3
        assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}

    assert unmarked(second["messages"][: len(first["messages"])]) == unmarked(first["messages"])
    assert '"stdout": "one\\n"' in results[0]["content"] and "is_error" not in results[0]


@pytest.mark.parametrize(
    "failure",
    [
        Failure(429, "rate_limit_error", "slow down", {"retry-after": "1"}),
        Failure(500, "api_error", "internal error"),
        Failure(529, "overloaded_error", "overloaded"),
        Stream(
            [
                message_start(),
                *text_block(0, "This will be cut off", pieces=4),
                *message_end("end_turn"),
            ],
            cut_after=3,
        ),
    ],
    ids=["429-retry-after", "500", "529-overloaded", "stream-cut"],
)
async def test_transient_failures_are_retried_by_temporal(
    client: SessionClient, fake: FakeAnthropic, unique_id: str, failure: Failure | Stream
) -> None:
    fake.push(failure, answer("Recovered."))
    session = client.agent("claude").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "Recovered."
    assert len(fake.requests) == 2, "one request per Temporal attempt: the SDK does not retry"
    assert [e.attempt for e in events if e.type == "data-retry"] == [2]
    if isinstance(failure, Failure) and "retry-after" in failure.headers:
        waited = fake.requests[1].at - fake.requests[0].at
        assert waited >= 1.0, f"retried after {waited:.2f}s despite retry-after: 1"


def rate_limited() -> Failure:
    return Failure(429, "rate_limit_error", "slow down", {"retry-after-ms": "100"})


async def test_bursts_of_failures_across_a_turn_are_retried_and_the_turn_completes(
    client: SessionClient, fake: FakeAnthropic, unique_id: str
) -> None:
    fake.push(
        # Step 0: a burst of four 429s, then a tool call.
        *(rate_limited() for _ in range(4)),
        Stream([
            message_start(),
            *text_block(0, "Checking."),
            *tool_block(1, "toolu_1", "Bash", {"command": "echo ran >> runs.txt; echo once"}),
            *message_end("tool_use"),
        ]),
        # Step 1: a 500, then a stream cut half-way through the answer, then the answer.
        Failure(500, "api_error", "internal error"),
        Stream(
            [message_start(), *text_block(0, "All good: the command ran", pieces=4), *message_end("end_turn")],
            cut_after=3,
        ),
        answer("All good: the command ran once."),
    )  # fmt: skip
    session = client.agent("claude").session(unique_id)
    result = await session.send("go")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    assert reply.text() == "Checking.All good: the command ran once."
    (tool,) = reply.tool_parts()
    assert tool.output["stdout"] == "once\n"
    assert len(fake.requests) == 8
    retries = [(e.step, e.chunk.data["attempt"]) for e in events if e.type == "data-retry"]  # type: ignore[attr-defined]
    assert retries == [(0, 2), (0, 3), (0, 4), (0, 5), (1, 2), (1, 3)]
    # The reader saw the cut attempt's text too; with the retries applied it is history.
    assert assemble(events) == reply


async def test_a_burst_longer_than_the_retry_policy_fails_the_turn_and_the_next_works(
    client: SessionClient, fake: FakeAnthropic, unique_id: str
) -> None:
    attempts = policies.MODEL_STEP.retry.maximum_attempts
    fake.push(*(rate_limited() for _ in range(attempts)), answer("Back again."))
    session = client.agent("claude").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "ModelUnavailable"
    assert "429" in (outcome.error or "")
    assert events[-1].type == "error"
    assert len(fake.requests) == attempts
    assert (await session.history())[-1].status is MessageStatus.FAILED

    again = await session.send("and now?")
    assert (await again.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "Back again."


@pytest.mark.parametrize(
    "failure",
    [
        Failure(400, "invalid_request_error", "messages: roles must alternate"),
        Failure(401, "authentication_error", "invalid x-api-key"),
        Failure(403, "permission_error", "not allowed"),
        Failure(404, "not_found_error", "model: claude-nope"),
    ],
    ids=["400", "401", "403", "404"],
)
async def test_client_errors_fail_the_turn_clearly_without_retry(
    client: SessionClient, fake: FakeAnthropic, unique_id: str, failure: Failure
) -> None:
    fake.push(failure, answer("Fine again."))
    session = client.agent("claude").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidModelRequest"
    assert f"Anthropic API {failure.status}" in (outcome.error or "")
    assert failure.message in (outcome.error or "")
    assert events[-1].type == "error"
    assert failure.message in events[-1].chunk.error_text  # type: ignore[attr-defined]
    assert len(fake.requests) == 1
    failed = (await session.history())[-1]
    assert failed.status is MessageStatus.FAILED
    assert failure.message in failed.metadata["error"]  # type: ignore[index]

    again = await session.send("and now?")
    assert (await again.outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "Fine again."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_files_reach_claude_as_image_and_document_blocks_and_data_parts_stay_out(
    client: SessionClient, fake: FakeAnthropic, unique_id: str
) -> None:
    png, pdf = b"\x89PNG\r\n\x1a\n-pixels-", b"%PDF-1.7 a tiny pdf"
    fake.push(answer("I see a dot, a photo, a PDF and your notes."))
    session = client.agent("claude").session(unique_id)
    result = await session.send(
        {
            "role": "user",
            "parts": [
                {"type": "text", "text": "What are these?"},
                {"type": "file", "mediaType": "image/png", "url": f"data:image/png;base64,{b64(png)}"},
                {"type": "file", "mediaType": "image/jpeg", "url": "https://example.com/photo.jpg"},
                # Just the top-level type, as the AI SDK allows: the data: URL says the rest.
                {"type": "file", "mediaType": "image", "url": f"data:image/gif;base64,{b64(b'GIF89a')}"},
                {"type": "file", "mediaType": "application/pdf", "url": f"data:application/pdf;base64,{b64(pdf)}", "filename": "spec.pdf"},
                {"type": "file", "mediaType": "text/plain", "url": f"data:text/plain;base64,{b64('notes: é'.encode())}", "filename": "notes.txt"},
                {"type": "file", "mediaType": "application/pdf", "url": "https://example.com/paper.pdf"},
                {"type": "data-ticket", "id": "t1", "data": {"priority": "high"}},
            ],
        }
    )  # fmt: skip
    assert (await result.outcome).status is TurnStatus.FINISHED
    (sent,) = fake.requests
    assert unmarked(sent.body["messages"]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(png)}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/photo.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": b64(b"GIF89a")}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(pdf)}, "title": "spec.pdf"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes: é"}, "title": "notes.txt"},
                {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
            ],
        }
    ]  # fmt: skip
    # The data part is in history, for the front end, though the model never saw it.
    user = (await session.history())[0]
    assert [p.type for p in user.parts] == ["text", *["file"] * 6, "data-ticket"]


async def test_a_file_claude_cannot_take_fails_the_turn_once_and_later_turns_work(
    client: SessionClient, fake: FakeAnthropic, unique_id: str
) -> None:
    zipped = f"data:application/zip;base64,{b64(b'PK-not-really')}"
    session = client.agent("claude").session(unique_id)
    result = await session.send(
        [
            {"type": "text", "text": "unpack this"},
            {"type": "file", "mediaType": "application/zip", "url": zipped, "filename": "a.zip"},
        ]
    )
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidModelRequest"
    assert "'a.zip' is 'application/zip'" in (outcome.error or "")
    assert "image/png" in (outcome.error or "") and "application/pdf" in (outcome.error or "")
    assert fake.requests == [], "refused before any request, and not retried"

    # The file stays in history; the next turn tells the model it was not sent.
    fake.push(answer("Zip files are beyond me."))
    again = await session.send("ok, what can you do?")
    assert (await again.outcome).status is TurnStatus.FINISHED
    (sent,) = fake.requests
    # The failed answer has nothing to show, so both user messages make one turn.
    assert unmarked(sent.body["messages"]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "unpack this"},
                {"type": "text", "text": "[file 'a.zip': not sent]"},
                {"type": "text", "text": "ok, what can you do?"},
            ],
        }
    ]


async def test_a_missing_api_key_is_a_clear_failure(
    start_worker: StartWorker, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = await start_worker([claude], providers=[AnthropicProvider(api_key=None)])
    result = await client.agent("claude").session(unique_id).send("hi")
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert "ANTHROPIC_API_KEY is not set" in (outcome.error or "")
    assert ToolState.OUTPUT_AVAILABLE  # the enum import is used by other tests


async def test_the_demo_runs_on_claude_through_the_real_sdk(
    stack: object, fake: FakeAnthropic, tmp_path: object
) -> None:
    import sys

    from tests.processes import REPO
    from tests.test_cli import cli_env

    fake.push(
        Stream([
            message_start(),
            *text_block(0, "Let me look."),
            *tool_block(1, "toolu_ls", "List", {"path": "."}),
            *message_end("tool_use"),
        ]),
        answer("The workspace is empty."),
    )  # fmt: skip
    env = cli_env(
        TEMPORAL_ADDRESS=stack.config.temporal_address,  # type: ignore[attr-defined]
        REDIS_URL=stack.config.redis_url,  # type: ignore[attr-defined]
        SESSIONFLOW_DATA_DIR=str(tmp_path),
        ANTHROPIC_API_KEY="sk-ant-demo",
        ANTHROPIC_BASE_URL=fake.url,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessionflow", "demo", "--no-keep", "--model", "anthropic/claude-sonnet-4-6",
        env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "Let me look." in text and "▶ List: " in text and "The workspace is empty." in text
    assert "(anthropic/claude-sonnet-4-6)" in text
    assert [t["name"] for t in fake.requests[0].body["tools"]] == [
        "Read",
        "Write",
        "Edit",
        "Grep",
        "List",
        "Bash",
    ]
