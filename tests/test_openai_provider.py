"""The OpenAI-compatible provider: the real `openai` SDK over HTTP against a local fake of
the Chat Completions API, reached the way a user reaches Ollama or vLLM: through
`OPENAI_BASE_URL`, with the provider every worker has built in."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.client.client import SessionClient
from sessionflow.contract import FinishReason, TurnStatus
from sessionflow.errors import ModelUnavailable
from sessionflow.messages import MessageStatus, ReasoningPart
from sessionflow.providers.base import ModelRequest, StepFinished, ToolCallReady
from sessionflow.providers.openai import OpenAIProvider
from sessionflow.streams.assemble import assemble
from tests.conftest import StartWorker
from tests.fake_openai import (
    Failure,
    FakeOpenAI,
    Stream,
    answer,
    error_event,
    finish,
    reasoning,
    role,
    text,
    tool_call,
    usage,
    whole_tool_call,
)
from tests.serving import serving

SYSTEM = "You are a careful coding agent."
gpt = agent("gpt", model="openai/gpt-4.1-mini", system=SYSTEM, tools=[bash_tool()])
llama = agent("llama", model="openai/llama3.1", tools=[bash_tool()])


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    api = FakeOpenAI()
    async with serving(api.app) as api.url:
        yield api


@pytest.fixture
async def client(
    start_worker: StartWorker, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> SessionClient:
    """A worker given no providers: `openai/` is the built-in one, configured by env."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    return await start_worker([gpt, llama])


async def test_text_and_reasoning_stream_and_usage_counts_cached_tokens(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    fake.push(
        Stream([
            role(),
            *reasoning("The user greets me."),
            *text("Hello! How can I help?"),
            finish("stop"),
            usage(prompt=340, completion=12, cached=300),
        ])
    )  # fmt: skip
    session = client.agent("gpt").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED

    types = [e.type for e in events]
    assert types.count("text-delta") == 3 and types.count("reasoning-delta") == 2
    assert types.index("reasoning-start") < types.index("text-start")
    assert "".join(e.chunk.delta for e in events if e.type == "text-delta") == (  # type: ignore[attr-defined]
        "Hello! How can I help?"
    )
    reply = (await session.history())[-1]
    assert reply.text() == "Hello! How can I help?"
    (thought,) = [p for p in reply.parts if isinstance(p, ReasoningPart)]
    assert thought.text == "The user greets me."
    assert [e.chunk.finish_reason for e in events if e.type == "finish"] == ["stop"]  # type: ignore[attr-defined]
    by_model = (await session.usage()).by_model["openai/gpt-4.1-mini"]
    # As Anthropic's are counted: the prompt less the cache reads, and the reads apart.
    assert (by_model.input_tokens, by_model.output_tokens) == (40, 12)
    assert (by_model.cache_read_tokens, by_model.cache_write_tokens) == (300, 0)

    (sent,) = fake.requests
    body = sent.body
    assert body["model"] == "gpt-4.1-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "hi"},
    ]
    (bash,) = body["tools"]
    assert bash["type"] == "function" and set(bash["function"]) == {
        "name",
        "description",
        "parameters",
    }
    assert bash["function"]["name"] == "Bash"
    assert bash["function"]["parameters"]["properties"]["command"]["type"] == "string"
    assert sent.headers["authorization"] == "Bearer sk-openai-test"
    assert sent.headers.get("x-stainless-retry-count", "0") == "0"


async def test_tool_calls_round_trip_as_assistant_tool_calls_and_tool_messages(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    fake.push(
        Stream([
            role(),
            *reasoning("Two commands.", key="reasoning"),
            *text("Running both."),
            *tool_call(0, "call_a", "Bash", {"command": "echo one"}),
            *tool_call(1, "call_b", "Bash", {"command": "echo two; exit 4"}, pieces=3),
            finish("tool_calls"),
            usage(prompt=100, completion=40),
        ]),
        answer("Both ran.", prompt=180, completion=5),
    )  # fmt: skip
    session = client.agent("gpt").session(unique_id)
    result = await session.send("run two things")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED

    reply = (await session.history())[-1]
    assert reply.text() == "Running both.Both ran."
    one, two = reply.tool_parts()
    # The runtime names the calls, in the stream and in history, never by the server's ids.
    assert {one.tool_call_id, two.tool_call_id}.isdisjoint({"call_a", "call_b"})
    started = [e.chunk for e in events if e.type == "tool-input-start"]
    starts = [(c.tool_call_id, c.tool_name) for c in started]  # type: ignore[attr-defined]
    assert starts == [(one.tool_call_id, "Bash"), (two.tool_call_id, "Bash")]
    first_call = [
        e.chunk.input_text_delta  # type: ignore[attr-defined]
        for e in events
        if e.type == "tool-input-delta" and e.chunk.tool_call_id == one.tool_call_id  # type: ignore[attr-defined]
    ]
    assert len(first_call) == 2 and "".join(first_call) == '{"command": "echo one"}'
    assert one.output["stdout"] == "one\n"
    assert (two.output["stdout"], two.output["exit_code"]) == ("two\n", 4)
    assert assemble(events) == reply
    total = (await session.usage()).by_model["openai/gpt-4.1-mini"]
    assert (total.input_tokens, total.output_tokens) == (280, 45)

    assert len(fake.requests) == 2
    system, user, assistant, *results = fake.requests[1].body["messages"]
    assert (system["role"], user) == ("system", {"role": "user", "content": "run two things"})
    assert assistant == {
        "role": "assistant",
        "content": "Running both.",
        "tool_calls": [
            {
                "id": one.tool_call_id,
                "type": "function",
                "function": {"name": "Bash", "arguments": '{"command": "echo one"}'},
            },
            {
                "id": two.tool_call_id,
                "type": "function",
                "function": {"name": "Bash", "arguments": '{"command": "echo two; exit 4"}'},
            },
        ],
    }
    assert [(r["role"], r["tool_call_id"]) for r in results] == [
        ("tool", one.tool_call_id),
        ("tool", two.tool_call_id),
    ]
    assert json.loads(results[0]["content"])["stdout"] == "one\n"
    assert json.loads(results[1]["content"])["exit_code"] == 4


async def test_a_failed_tool_call_goes_back_as_an_error_result(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    fake.push(
        Stream([role(), *tool_call(0, "call_x", "Deploy", {"env": "prod"}), finish("tool_calls"), usage()]),
        answer("I have no Deploy tool."),
    )  # fmt: skip
    session = client.agent("gpt").session(unique_id)
    result = await session.send("deploy")
    assert (await result.outcome).status is TurnStatus.FINISHED
    (failed,) = (await session.history())[-1].tool_parts()
    assert failed.error_text is not None
    assert "tool 'Deploy' is not available in this step" in failed.error_text

    *_, assistant, tool_result = fake.requests[1].body["messages"]
    call_id = failed.tool_call_id
    assert assistant["content"] is None and assistant["tool_calls"][0]["id"] == call_id
    assert tool_result == {
        "role": "tool",
        "tool_call_id": call_id,
        "content": f"Error: {failed.error_text}",
    }


async def test_a_local_server_needs_no_key_and_whole_tool_calls_with_stop_work(
    start_worker: StartWorker, fake: FakeOpenAI, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ollama's way: no key, a call in one chunk without an id, `stop` after it, and
    usage without cache details."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    client = await start_worker([llama])
    fake.push(
        Stream([role(), whole_tool_call(None, "Bash", {"command": "echo hi"}), finish("stop"), usage(prompt=30, completion=9)]),
        answer("It printed hi.", prompt=50, completion=4),
    )  # fmt: skip
    session = client.agent("llama").session(unique_id)
    result = await session.send("say hi")
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    (call,) = reply.tool_parts()
    assert call.tool_call_id.startswith("call_") and call.output["stdout"] == "hi\n"
    assert reply.text() == "It printed hi."
    total = (await session.usage()).by_model["openai/llama3.1"]
    assert (total.input_tokens, total.output_tokens, total.cache_read_tokens) == (80, 13, 0)
    assert fake.requests[0].headers["authorization"] == "Bearer sessionflow-no-key"
    assert "system" not in [m["role"] for m in fake.requests[0].body["messages"]]
    assert fake.requests[1].body["messages"][1]["tool_calls"][0]["id"] == call.tool_call_id


@pytest.mark.parametrize(
    "failure",
    [
        Failure(429, "Rate limit reached", "rate_limit_exceeded", {"retry-after": "1"}),
        Failure(503, "overloaded", "server_error", {"retry-after-ms": "400"}),
        Failure(500, "internal error", "server_error"),
        Stream([role(), *text("This will be cut off", pieces=4), finish("stop"), usage()], cut_after=3),
        Stream([role(), *text("Half an answer")], done=False),
        Stream([role(), *text("Partial"), error_event("upstream model failed")]),
        Stream([role(), *tool_call(0, "call_j", "Bash", '{"command": "ls"'), finish("tool_calls"), usage()]),
    ],
    ids=["429-retry-after", "503-retry-after-ms", "500", "stream-cut", "no-finish", "mid-stream-error", "invalid-tool-json"],
)  # fmt: skip
async def test_transient_failures_are_retried_by_temporal(
    client: SessionClient, fake: FakeOpenAI, unique_id: str, failure: Failure | Stream
) -> None:
    fake.push(failure, answer("Recovered."))
    session = client.agent("gpt").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    assert reply.text() == "Recovered."
    assert reply.tool_parts() == []
    assert len(fake.requests) == 2, "one request per Temporal attempt: the SDK does not retry"
    assert [e.attempt for e in events if e.type == "data-retry"] == [2]
    if isinstance(failure, Failure) and failure.headers:
        waited = fake.requests[1].at - fake.requests[0].at
        asked = float(failure.headers.get("retry-after", 0)) or (
            float(failure.headers["retry-after-ms"]) / 1000
        )
        assert waited >= asked, f"retried after {waited:.2f}s despite {failure.headers}"


@pytest.mark.parametrize(
    "failure",
    [
        Failure(400, "This model's maximum context length is 8192 tokens"),
        Failure(401, "Incorrect API key provided", "invalid_api_key"),
        Failure(404, "model 'llama9' not found, try pulling it first", "not_found_error"),
        Failure(422, "messages.1.content: field required"),
    ],
    ids=["400", "401", "404", "422"],
)
async def test_client_errors_fail_the_turn_once_with_the_servers_message(
    client: SessionClient, fake: FakeOpenAI, unique_id: str, failure: Failure
) -> None:
    fake.push(failure, answer("Fine again."))
    session = client.agent("gpt").session(unique_id)
    result = await session.send("hi")
    events = [e async for e in result.stream()]
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidModelRequest"
    assert f"OpenAI-compatible API at 127.0.0.1:{fake.url.rsplit(':', 1)[1]} {failure.status}" in (
        outcome.error or ""
    )
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
    assert len(fake.requests) == 2
    assert fake.requests[1].body["messages"][-1] == {"role": "user", "content": "hi\n\nand now?"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_files_reach_the_model_as_image_url_file_and_text_parts_and_data_parts_stay_out(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    png, pdf = b"\x89PNG\r\n\x1a\n-pixels-", b"%PDF-1.7 a tiny pdf"
    fake.push(answer("I see a dot, a photo, a GIF, two PDFs and your notes."))
    session = client.agent("gpt").session(unique_id)
    result = await session.send(
        {
            "role": "user",
            "parts": [
                {"type": "text", "text": "What are these?"},
                {"type": "file", "mediaType": "image/png", "url": f"data:image/png;base64,{b64(png)}", "filename": "dot.png"},
                {"type": "file", "mediaType": "image/jpeg", "url": "https://example.com/photo.jpg"},
                # Just the top-level type, as the AI SDK allows: the data: URL says the rest.
                {"type": "file", "mediaType": "image", "url": f"data:image/gif;base64,{b64(b'GIF89a')}"},
                {"type": "file", "mediaType": "application/pdf", "url": f"data:application/pdf;base64,{b64(pdf)}", "filename": "spec.pdf"},
                {"type": "file", "mediaType": "application/pdf", "url": f"data:application/pdf;base64,{b64(pdf)}"},
                {"type": "file", "mediaType": "text/plain", "url": f"data:text/plain;base64,{b64('notes: é'.encode())}", "filename": "notes.txt"},
                {"type": "file", "mediaType": "text/plain", "url": f"data:text/plain;base64,{b64(b'unnamed')}"},
                {"type": "data-ticket", "id": "t1", "data": {"priority": "high"}},
            ],
        }
    )  # fmt: skip
    assert (await result.outcome).status is TurnStatus.FINISHED
    (sent,) = fake.requests
    assert sent.body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png)}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/photo.jpg"}},
                {"type": "image_url", "image_url": {"url": f"data:image/gif;base64,{b64(b'GIF89a')}"}},
                {"type": "file", "file": {"filename": "spec.pdf", "file_data": f"data:application/pdf;base64,{b64(pdf)}"}},
                # OpenAI refuses file data without a name.
                {"type": "file", "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{b64(pdf)}"}},
                {"type": "text", "text": "# notes.txt\n\nnotes: é"},
                {"type": "text", "text": "unnamed"},
            ],
        },
    ]  # fmt: skip
    # The data part is in history, for the front end, though the model never saw it.
    user = (await session.history())[0]
    assert [p.type for p in user.parts] == ["text", *["file"] * 7, "data-ticket"]


async def test_a_file_the_api_cannot_take_fails_the_turn_once_and_later_turns_work(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    zipped = f"data:application/zip;base64,{b64(b'PK-not-really')}"
    session = client.agent("gpt").session(unique_id)
    result = await session.send(
        [
            {"type": "text", "text": "unpack this"},
            {"type": "file", "mediaType": "application/zip", "url": zipped, "filename": "a.zip"},
        ]
    )
    events = [e async for e in result.stream()]
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidModelRequest"
    assert "'a.zip' is 'application/zip'" in (outcome.error or "")
    assert "image/png" in (outcome.error or "") and "application/pdf" in (outcome.error or "")
    assert events[-1].type == "error"
    assert fake.requests == [], "refused before any request, and not retried"

    # The file stays in history; the next turn tells the model it was not sent.
    fake.push(answer("Zip files are beyond me."))
    again = await session.send("ok, what can you do?")
    assert (await again.outcome).status is TurnStatus.FINISHED
    (sent,) = fake.requests
    # The failed answer has nothing to show, so both user messages make one, and text
    # alone stays a string.
    assert sent.body["messages"][1:] == [
        {"role": "user", "content": "unpack this\n\n[file 'a.zip': not sent]\n\nok, what can you do?"}
    ]  # fmt: skip


async def test_a_pdf_link_fails_the_turn_asking_for_a_data_url_and_merged_turns_keep_files(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    """The Chat Completions API fetches image links, not PDF links."""
    session = client.agent("gpt").session(unique_id)
    result = await session.send(
        [
            {"type": "text", "text": "summarize"},
            {"type": "file", "mediaType": "application/pdf", "url": "https://example.com/paper.pdf", "filename": "paper.pdf"},
        ]
    )  # fmt: skip
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidModelRequest"
    assert "file 'paper.pdf'" in (outcome.error or "")
    assert "send it as a data: URL" in (outcome.error or "")
    assert fake.requests == []

    png = f"data:image/png;base64,{b64(b'-pixels-')}"
    fake.push(answer("A dot."))
    again = await session.send(
        [
            {"type": "text", "text": "then this?"},
            {"type": "file", "mediaType": "image/png", "url": png},
        ]
    )
    assert (await again.outcome).status is TurnStatus.FINISHED
    (sent,) = fake.requests
    assert sent.body["messages"][1:] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "summarize"},
                {"type": "text", "text": "[file 'paper.pdf': not sent]"},
                {"type": "text", "text": "then this?"},
                {"type": "image_url", "image_url": {"url": png}},
            ],
        }
    ]


async def test_without_a_key_or_a_base_url_the_turn_fails_clearly(
    start_worker: StartWorker, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    client = await start_worker([gpt])
    result = await client.agent("gpt").session(unique_id).send("hi")
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "InvalidModelRequest"
    assert "OPENAI_API_KEY is not set" in (outcome.error or "")


@pytest.mark.parametrize(
    ("failure", "says", "retry_after"),
    [
        (Failure(429, "Rate limit reached", "rate_limit_exceeded", {"retry-after": "1"}), "429: rate_limit_exceeded: Rate limit reached", 1.0),
        (Failure(503, "overloaded", "server_error", {"retry-after-ms": "400"}), "503: server_error: overloaded", 0.4),
        (Stream([role(), *text("This will be cut off", pieces=4), finish("stop"), usage()], cut_after=3), "unreachable", None),
        (Stream([role(), *text("Half an answer")], done=False), "ended before a finish_reason", None),
        (Stream([role(), *text("Partial"), error_event("upstream model failed")]), "failed mid-stream: upstream model failed", None),
        (Stream([role(), *tool_call(0, "call_j", "Bash", '{"command": "ls"'), finish("tool_calls"), usage()]), "tool input from the model is not valid JSON", None),
    ],
    ids=["429-retry-after", "503-retry-after-ms", "stream-cut", "no-finish", "mid-stream-error", "invalid-tool-json"],
)  # fmt: skip
async def test_each_transient_failure_is_model_unavailable_naming_its_cause(
    fake: FakeOpenAI, failure: Failure | Stream, says: str, retry_after: float | None
) -> None:
    """What the session tests above retry, seen at the provider: the error Temporal gets."""
    provider = OpenAIProvider(api_key="sk-openai-test", base_url=f"{fake.url}/v1")
    fake.push(failure)
    request = ModelRequest(model="gpt-4.1-mini", system=None, messages=[], tools=[])
    with pytest.raises(ModelUnavailable) as raised:
        async for _event in provider.stream(request):
            pass
    assert says in str(raised.value)
    assert raised.value.retry_after == retry_after


async def test_whole_calls_without_an_index_are_told_apart_by_their_ids(fake: FakeOpenAI) -> None:
    provider = OpenAIProvider(base_url=f"{fake.url}/v1")
    fake.push(
        Stream([
            role(),
            whole_tool_call("call_1", "Bash", {"command": "ls"}, index=None),
            whole_tool_call("call_2", "Bash", {"command": "pwd"}, index=None),
            finish("tool_calls"),
            usage(),
        ])
    )  # fmt: skip
    request = ModelRequest(model="llama3.1", system=None, messages=[], tools=[])
    events = [e async for e in provider.stream(request)]
    ready = [(e.tool_call_id, e.input) for e in events if isinstance(e, ToolCallReady)]
    assert ready == [("call_1", {"command": "ls"}), ("call_2", {"command": "pwd"})]
    assert isinstance(events[-1], StepFinished)
    assert events[-1].reason is FinishReason.TOOL_CALLS


async def test_the_prompt_prefix_is_byte_stable_from_step_to_step_and_turn_to_turn(
    client: SessionClient, fake: FakeOpenAI, unique_id: str
) -> None:
    """OpenAI-compatible servers cache a prompt prefix automatically when each request
    begins with the last one, byte for byte: three turns with tool calls, every request
    after the first begins with the one before it."""
    session = client.agent("gpt").session(unique_id)
    for turn in range(3):
        fake.push(
            Stream(
                [
                    role(),
                    *tool_call(0, f"call_{turn}", "Bash", {"command": f"echo {turn}"}),
                    finish("tool_calls"),
                    usage(),
                ]
            ),
            answer(f"Answer {turn}."),
        )
        outcome = await (await session.send(f"Question {turn}")).outcome
        assert outcome.status is TurnStatus.FINISHED
    assert len(fake.requests) == 6
    assert [r.prefix_matched for r in fake.requests] == [None, *[True] * 5]
