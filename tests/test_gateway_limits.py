"""The gateway against a hostile client: each test is an attack that must fail.

Slow and huge requests (half-sent headers, a stalled body, 100 KB of headers, more
connections than allowed, idle keep-alive), a tenant opening stream after stream, an
unknown agent, a context full of secrets that does not validate, ids that are not
UTF-8, and a resume cursor past the end of the stream. Everything goes through real
HTTP (raw sockets where a well-behaved client could not misbehave enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field
from temporalio.service import RPCError

from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import free_port
from sessionflow.client import SessionClient
from sessionflow.gateway.app import create_app
from sessionflow.gateway.config import GatewayConfig
from sessionflow.gateway.main import serve_gateway
from sessionflow.ids import session_workflow_id
from tests.agents import GATEWAY_AGENTS, TOOL_SCRIPT, context_agent
from tests.conftest import Gateway, StartWorker
from tests.sse import frames

KEYS = {"key-for-acme-0001": "acme", "key-for-globex-02": "globex"}
SECRET = "sk-live-0123456789abcdefSECRET"
KEY_SECRET = "sk-key-9876543210fedcbaKEYSECRET"


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]


class StrictCaller(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str
    api_token: str
    pet: Annotated[Cat | Dog, Field(discriminator="kind")] | None = None
    scores: dict[str, int] = {}


# Known to the gateway only: its requests are refused before any worker would see them.
strict_agent = agent("strict", model=TOOL_SCRIPT, context_schema=StrictCaller)

Serve = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def serve(start_worker: StartWorker) -> AsyncIterator[Serve]:
    """Start a gateway with the given `GatewayConfig` limits, in front of a worker
    serving the gateway agents, its client knowing them (so it serves only those)."""
    worker_client = await start_worker([*GATEWAY_AGENTS, context_agent])
    client = SessionClient(
        worker_client.temporal,
        worker_client.redis,
        task_queue=worker_client.task_queue,
        agents=[*GATEWAY_AGENTS, context_agent, strict_agent],
    )
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**limits: Any) -> Gateway:
        config = GatewayConfig(
            api_keys=KEYS,
            default_agent="tooling",
            heartbeat_seconds=0.3,
            max_body_bytes=64 * 1024,
            **limits,
        )
        port = free_port()
        stop, started = asyncio.Event(), asyncio.Event()
        app = create_app(client, config)
        task = asyncio.create_task(serve_gateway(app, "127.0.0.1", port, stop, started))
        running.append((stop, task))
        await started.wait()
        return Gateway(url=f"http://127.0.0.1:{port}", client=client, keys=KEYS)

    yield start
    for stop, task in running:
        stop.set()
        await task


def auth(gw: Gateway, tenant: str = "acme") -> dict[str, str]:
    return gw.headers(tenant)


def port_of(gw: Gateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


async def connect(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port_of(gw))


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails on timeout)."""
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a content-length, read off a raw connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


async def assert_no_workflow(gw: Gateway, workflow_id: str) -> None:
    with pytest.raises(RPCError, match="not found"):
        await gw.client.temporal.get_workflow_handle(workflow_id).describe()


async def wait_idle(gw: Gateway, session_id: str, agent_name: str = "tooling") -> None:
    session = gw.client.agent(agent_name).session(session_id)
    for _ in range(200):
        if not (await session.info()).busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session did not become idle")


# -- 1. connections and read timeouts -----------------------------------------------


async def test_requests_whose_headers_never_finish_are_dropped(serve: Serve) -> None:
    gw = await serve(header_timeout=1.0)
    began = time.monotonic()

    async def silent() -> bytes:
        reader, writer = await connect(gw)
        try:
            return await read_until_closed(reader, 4)
        finally:
            writer.close()

    async def half_header() -> bytes:
        reader, writer = await connect(gw)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            return await read_until_closed(reader, 4)
        finally:
            writer.close()

    async def drip() -> bytes:
        # A byte at a time never resets the clock: the deadline runs from the first.
        reader, writer = await connect(gw)
        answer = asyncio.create_task(read_until_closed(reader, 4))
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)
            return await answer
        finally:
            writer.close()

    answers = await asyncio.gather(silent(), half_header(), drip())
    assert time.monotonic() - began < 4
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
    assert answers[1].startswith(b"HTTP/1.1 408 ")
    assert b'"request_timeout"' in answers[1]
    # The server itself is fine.
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{gw.url}/healthz")).status_code == 200


async def test_huge_headers_are_refused(serve: Serve) -> None:
    gw = await serve()
    reader, writer = await connect(gw)
    answer = asyncio.create_task(read_until_closed(reader, 4))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    # 8 KB at a time, until the server has had enough (writing on after it closed
    # would have the kernel reset the connection, losing its answer).
    for _ in range(50):
        if answer.done():
            break
        writer.write(b"a" * 8192)
        await asyncio.sleep(0.02)
    refused = await answer
    writer.close()
    assert refused.startswith(b"HTTP/1.1 431 "), refused[:200]
    assert b'"request_headers_too_large"' in refused


async def test_a_stalled_body_gets_408_and_starts_nothing(serve: Serve, unique_id: str) -> None:
    gw = await serve(body_timeout=1.0)
    reader, writer = await connect(gw)
    began = time.monotonic()
    writer.write(
        f"POST /v1/sessions/{unique_id}/messages HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {next(iter(KEYS))}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        '{"message": "'.encode()
    )
    status, headers, body = await read_response(reader)
    assert status == 408, body
    assert error_code(body) == "request_timeout"
    assert 0.9 < time.monotonic() - began < 3
    assert headers["connection"] == "close"
    assert await read_until_closed(reader, 3) == b""
    writer.close()
    await assert_no_workflow(gw, session_workflow_id("tooling", f"acme:{unique_id}"))


async def test_past_the_connection_limit_the_gateway_answers_503(serve: Serve) -> None:
    gw = await serve(max_connections=3, keep_alive_timeout=30.0)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    held = []
    for _ in range(3):
        reader, writer = await connect(gw)
        writer.write(request)
        assert (await read_response(reader))[0] == 200
        held.append((reader, writer))  # idle keep-alive connections still count

    reader, writer = await connect(gw)
    writer.write(request)
    status, headers, body = await read_response(reader)
    assert status == 503 and error_code(body) == "server_busy"
    assert headers["retry-after"] and headers["connection"] == "close"
    assert await read_until_closed(reader, 3) == b""
    writer.close()

    held.pop()[1].close()
    for _ in range(50):
        reader, writer = await connect(gw)
        writer.write(request)
        status = (await read_response(reader))[0]
        writer.close()
        if status == 200:
            break
        await asyncio.sleep(0.05)
    assert status == 200
    for _, writer in held:
        writer.close()


async def test_idle_keep_alive_connections_are_closed(serve: Serve) -> None:
    gw = await serve(keep_alive_timeout=0.5)
    reader, writer = await connect(gw)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    began = time.monotonic()
    assert await read_until_closed(reader, 3) == b""
    assert time.monotonic() - began < 2
    writer.close()


# -- 2. streams per tenant -------------------------------------------------------------


async def test_a_tenant_can_hold_only_so_many_streams(serve: Serve, unique_id: str) -> None:
    gw = await serve(max_streams_per_tenant=2)
    base = f"{gw.url}/v1/sessions/{unique_id}"
    follow = f"{base}/stream?follow=true"
    async with httpx.AsyncClient(timeout=10) as http, contextlib.AsyncExitStack() as held:
        sent = await http.post(f"{base}/messages", json={"message": "hi"}, headers=auth(gw))
        assert sent.status_code == 202
        await wait_idle(gw, f"acme:{unique_id}")
        first = await held.enter_async_context(http.stream("GET", follow, headers=auth(gw)))
        second = await held.enter_async_context(http.stream("GET", follow, headers=auth(gw)))
        assert first.status_code == second.status_code == 200

        # Over the cap: every streaming route answers 429 at once, and does nothing.
        refused = await http.get(follow, headers=auth(gw))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["retry-after"]) > 0
        chat = {
            "id": unique_id,
            "messages": [{"id": "u9", "role": "user", "parts": [{"type": "text", "text": "x"}]}],
        }
        before = (
            await gw.client.agent("tooling").session(f"acme:{unique_id}").info()
        ).message_count
        refused = await http.post(f"{gw.url}/api/chat", json=chat, headers=auth(gw))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_streams"
        await asyncio.sleep(0.3)
        after = (await gw.client.agent("tooling").session(f"acme:{unique_id}").info()).message_count
        assert after == before, "a refused /api/chat still sent its message"
        # The resume route too, while an answer streams.
        sid = f"{unique_id}-long"
        await http.post(
            f"{gw.url}/v1/sessions/{sid}/messages?agent=streamer",
            json={"message": "long"},
            headers=auth(gw),
        )
        resume = f"{gw.url}/api/chat/{sid}/stream?agent=streamer"
        for _ in range(250):
            resumed = await http.get(resume, headers=auth(gw))
            if resumed.status_code != 204:
                break
            await asyncio.sleep(0.02)
        assert resumed.status_code == 429, resumed.text

        # Another tenant is not affected.
        globex = {**chat, "id": f"{unique_id}-g"}
        async with http.stream(
            "POST", f"{gw.url}/api/chat", json=globex, headers=auth(gw, "globex")
        ) as response:
            assert response.status_code == 200
            assert [f async for f in frames(response)][-1].data == "[DONE]"

        # A client that goes away gives its slot back.
        await first.aclose()
        for _ in range(100):
            again = await http.get(f"{base}/stream", headers=auth(gw))
            if again.status_code == 200:
                break
            await asyncio.sleep(0.02)
        assert again.status_code == 200, again.text

        # And so does a stream that ends: with one slot free, stream after stream works.
        for _ in range(3):
            async with http.stream("GET", f"{base}/stream", headers=auth(gw)) as response:
                assert response.status_code == 200
                assert [f async for f in frames(response)][-1].data == "[DONE]"


# -- 3. unknown agents -------------------------------------------------------------------


async def test_an_unknown_agent_is_404_and_starts_no_workflow(serve: Serve, unique_id: str) -> None:
    gw = await serve()
    async with httpx.AsyncClient(timeout=10) as http:
        sent = await http.post(
            f"{gw.url}/v1/sessions/{unique_id}/messages?agent=no-such-agent",
            json={"message": "hello?"},
            headers=auth(gw),
        )
        assert sent.status_code == 404, sent.text
        assert sent.json()["error"]["code"] == "agent_not_registered"
        chat = {
            "id": unique_id,
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "x"}]}],
        }
        chatted = await http.post(
            f"{gw.url}/api/chat?agent=no-such-agent", json=chat, headers=auth(gw)
        )
        assert chatted.status_code == 404
        assert chatted.json()["error"]["code"] == "agent_not_registered"
    await assert_no_workflow(gw, session_workflow_id("no-such-agent", f"acme:{unique_id}"))
    keys = [k async for k in gw.client.redis.scan_iter(match="sf:{session:no-such-agent:*")]
    assert keys == []


# -- 4. invalid context --------------------------------------------------------------------


async def test_an_invalid_context_is_422_at_once_and_never_echoed(
    serve: Serve, unique_id: str
) -> None:
    gw = await serve()
    contexts = {
        "contextual": [
            {"user": "ada", "api_tokn": SECRET},  # a typo: api_token is missing
            {"user": ["ada", SECRET], "api_token": {KEY_SECRET: SECRET}},
        ],
        "strict": [
            {"user": "ada", "api_token": "t", KEY_SECRET: SECRET},  # an unknown key
            {"user": "ada", "api_token": "t", "pet": {"kind": SECRET}},  # a bad tag
            {"user": "ada", "api_token": "t", "pet": {"kind": "cat", "lives": SECRET}},
            {"user": "ada", "api_token": "t", "scores": {KEY_SECRET: SECRET}},
        ],
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for agent_name, cases in contexts.items():
            for context in cases:
                began = time.monotonic()
                sent = await http.post(
                    f"{gw.url}/v1/sessions/{unique_id}/messages?agent={agent_name}",
                    json={"message": "who am I?", "context": context},
                    headers=auth(gw),
                )
                assert sent.status_code == 422, (context, sent.text)
                assert sent.json()["error"]["code"] == "invalid_input"
                assert time.monotonic() - began < 2
                assert SECRET not in sent.text and KEY_SECRET not in sent.text, sent.text
                assert "context does not match" in sent.json()["error"]["message"]
        # Refused by the request model, before the context is looked at: not echoed either.
        for body in (
            {"message": "hi", "context": SECRET},
            {"message": "hi", KEY_SECRET: SECRET},
            {"message": "hi", "context": {"user": "ada"}, "sandbox_id": [SECRET]},
        ):
            sent = await http.post(
                f"{gw.url}/v1/sessions/{unique_id}/messages?agent=contextual",
                json=body,
                headers=auth(gw),
            )
            assert sent.status_code == 422, sent.text
            assert sent.json()["error"]["code"] == "invalid_request"
            assert SECRET not in sent.text and KEY_SECRET not in sent.text, sent.text
        # Nothing started, nothing stored.
        for agent_name in contexts:
            workflow_id = session_workflow_id(agent_name, f"acme:{unique_id}")
            await assert_no_workflow(gw, workflow_id)
            assert [
                k async for k in gw.client.redis.scan_iter(match=f"sf:{{{workflow_id}}}*")
            ] == []
        # A valid context is accepted.
        sent = await http.post(
            f"{gw.url}/v1/sessions/{unique_id}/messages?agent=contextual",
            json={"message": "who am I?", "context": {"user": "ada", "api_token": "t-1"}},
            headers=auth(gw),
        )
        assert sent.status_code == 202, sent.text


# -- 5. ids that are not UTF-8 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sessions/s-%FF/messages",
        "/v1/sessions/s-%FE/messages",
        "/v1/sessions/s-%C0%AF/messages",  # an overlong '/'
        "/v1/sessions/s-%ED%A0%80/messages",  # a UTF-8-encoded lone surrogate
        "/v1/sessions/ok/messages?agent=tool%FFing",
        "/api/chat/s-%FF/stream",
    ],
)
async def test_ids_that_are_not_utf8_are_refused_never_folded(serve: Serve, path: str) -> None:
    gw = await serve()
    async with httpx.AsyncClient(timeout=10) as http:
        method = "GET" if path.endswith("/stream") else "POST"
        kwargs: dict[str, Any] = {} if method == "GET" else {"json": {"message": "hi"}}
        response = await http.request(method, gw.url + path, headers=auth(gw), **kwargs)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_id"
    # What the server would have folded it to (U+FFFD) names no session either.
    for folded in ("s-\ufffd", "s-\ufffd\ufffd", "s-\ufffd\ufffd\ufffd", "ok"):
        await assert_no_workflow(gw, session_workflow_id("tooling", f"acme:{folded}"))


async def test_utf8_ids_still_work(serve: Serve, unique_id: str) -> None:
    gw = await serve()
    async with httpx.AsyncClient(timeout=10) as http:
        sent = await http.post(
            f"{gw.url}/v1/sessions/{unique_id}-%C3%A9/messages",
            json={"message": "hi"},
            headers=auth(gw),
        )
        assert sent.status_code == 202, sent.text
    await wait_idle(gw, f"acme:{unique_id}-é")


# -- 6. a cursor past the end ------------------------------------------------------------------


async def test_a_cursor_past_the_end_of_the_stream_answers_at_once(
    serve: Serve, unique_id: str
) -> None:
    gw = await serve()
    base = f"{gw.url}/v1/sessions/{unique_id}"
    async with httpx.AsyncClient(timeout=10) as http:
        await http.post(f"{base}/messages", json={"message": "hi"}, headers=auth(gw))
        await wait_idle(gw, f"acme:{unique_id}")
        async with http.stream("GET", f"{base}/stream", headers=auth(gw)) as response:
            collected = [f async for f in frames(response) if f.comment is None]
        ids = [f.id for f in collected if f.id]
        last = ids[-1]
        ms, _, seq = last.partition("-")
        for after, header in (
            ("99999999999999-0", False),
            ("99999999999999-0", True),
            (f"{ms}-{int(seq) + 1}", False),
            (str(int(ms) + 1), True),
        ):
            headers = {**auth(gw), **({"last-event-id": after} if header else {})}
            params = {} if header else {"after": after}
            began = time.monotonic()
            response = await asyncio.wait_for(
                http.get(f"{base}/stream", params=params, headers=headers), 5
            )
            assert time.monotonic() - began < 2
            assert response.status_code == 416, (after, response.text)
            assert response.json()["error"]["code"] == "cursor_out_of_range"
            follow = await http.get(f"{base}/stream?follow=true", params=params, headers=headers)
            assert follow.status_code == 416
        # A cursor inside the stream still resumes after it.
        async with http.stream(
            "GET", f"{base}/stream", params={"after": ids[0]}, headers=auth(gw)
        ) as response:
            assert response.status_code == 200
            resumed = [f async for f in frames(response) if f.comment is None]
        assert [f.id for f in resumed if f.id] == ids[1:]
        assert resumed[-1].data == "[DONE]"


# -- 7. long-polls: per tenant, in all, and one wait per answer -------------------------


async def waiting_for_approval(gw: Gateway, http: httpx.AsyncClient, session_id: str) -> str:
    """Start an approver session whose turn then waits for a person; its answer's id."""
    sent = await http.post(
        f"{gw.url}/v1/sessions/{session_id}/messages?agent=approver",
        json={"message": "run something"},
        headers=auth(gw),
    )
    assert sent.status_code == 202, sent.text
    session = gw.client.agent("approver").session(f"acme:{session_id}")
    for _ in range(200):
        if (await session.info()).pending_approvals:
            break
        await asyncio.sleep(0.05)
    answer: str = sent.json()["assistantMessageId"]
    return answer


async def test_one_tenant_s_long_polls_leave_room_for_others(serve: Serve, unique_id: str) -> None:
    # 8 long requests in all, 2 of them kept for tenants that hold none: acme holds at
    # most 6, however many it asks for; globex still gets in, and its short requests too.
    gw = await serve(max_long_requests=8, reserved_long_requests=2)
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await waiting_for_approval(gw, http, unique_id)
        poll = f"{gw.url}/v1/sessions/{unique_id}/messages/{answer}/outcome?agent=approver&wait=20"
        held = [asyncio.create_task(http.get(poll, headers=auth(gw))) for _ in range(6)]
        await asyncio.sleep(1.0)
        assert not any(task.done() for task in held)
        refused = await http.get(poll, headers=auth(gw))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["retry-after"]) > 0
        # Another tenant: a long request of its own, and short ones.
        other = f"{gw.url}/v1/sessions/{unique_id}-g"
        sent = await http.post(
            f"{other}/messages", json={"message": "hi"}, headers=auth(gw, "globex")
        )
        assert sent.status_code == 202, sent.text
        mine = sent.json()["assistantMessageId"]
        done = await http.get(
            f"{other}/messages/{mine}/outcome?wait=20", headers=auth(gw, "globex")
        )
        assert done.status_code == 200 and done.json()["status"] == "finished", done.text
        # The last free slot is globex's too, while it holds none; acme's are all taken.
        assert (await http.get(poll, headers=auth(gw))).status_code == 429
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_past_the_gateway_s_long_request_cap_every_tenant_gets_503(
    serve: Serve, unique_id: str
) -> None:
    gw = await serve(max_long_requests=3, reserved_long_requests=0)
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await waiting_for_approval(gw, http, unique_id)
        poll = f"{gw.url}/v1/sessions/{unique_id}/messages/{answer}/outcome?agent=approver&wait=20"
        held = [asyncio.create_task(http.get(poll, headers=auth(gw))) for _ in range(3)]
        await asyncio.sleep(1.0)
        stream = f"{gw.url}/v1/sessions/{unique_id}/stream?agent=approver"
        for tenant, url in (
            ("acme", poll),
            ("acme", stream),
            ("globex", f"{gw.url}/api/chat/x/stream"),
        ):
            refused = await http.get(url, headers=auth(gw, tenant))
            if tenant == "globex" and refused.status_code == 204:
                continue  # nothing streams there: no slot was asked for
            assert refused.status_code == 503, (tenant, url, refused.text)
            assert refused.json()["error"]["code"] == "server_busy"
            assert int(refused.headers["retry-after"]) > 0
        # Short requests still go through.
        info = await http.get(f"{gw.url}/v1/sessions/{unique_id}?agent=approver", headers=auth(gw))
        assert info.status_code == 200, info.text
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_many_waiters_on_one_answer_share_one_wait(serve: Serve, unique_id: str) -> None:
    # Temporal allows 10 updates in flight per workflow: before, the 11th long-poll on
    # one session answered 500. Now 15 over HTTP and 15 from Python share one update.
    gw = await serve()
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await waiting_for_approval(gw, http, unique_id)
        base = f"{gw.url}/v1/sessions/{unique_id}"
        poll = f"{base}/messages/{answer}/outcome?agent=approver&wait=25"
        polls = [asyncio.create_task(http.get(poll, headers=auth(gw))) for _ in range(15)]
        session = gw.client.agent("approver").session(f"acme:{unique_id}")
        direct = [asyncio.ensure_future(session.answer(answer).outcome) for _ in range(15)]
        await asyncio.sleep(1.5)
        assert not any(task.done() for task in polls + direct)  # type: ignore[operator]
        assert len(waits_on(session.workflow_id)) == 1
        pending = (await session.info()).pending_approvals
        approved = await http.post(
            f"{base}/approvals?agent=approver",
            json={"approvalId": pending[0], "approved": True},
            headers=auth(gw),
        )
        assert approved.status_code == 200, approved.text
        answers = await asyncio.gather(*polls)
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
        assert {a.json()["status"] for a in answers} == {"finished"}
        assert {(await d).status.value for d in direct} == {"finished"}
        assert waits_on(session.workflow_id) == []


async def test_a_wait_nobody_awaits_any_more_is_cancelled(serve: Serve, unique_id: str) -> None:
    # Long-polls that time out (202) leave no update behind on the session.
    gw = await serve()
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await waiting_for_approval(gw, http, unique_id)
        poll = f"{gw.url}/v1/sessions/{unique_id}/messages/{answer}/outcome?agent=approver&wait=1"
        answers = await asyncio.gather(*(http.get(poll, headers=auth(gw)) for _ in range(12)))
        assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
        assert {a.json()["done"] for a in answers} == {False}
        workflow_id = session_workflow_id("approver", f"acme:{unique_id}")
        assert waits_on(workflow_id) == []


def waits_on(workflow_id: str) -> list[object]:
    """The shared outcome waits in flight on one session (client.shared_waits)."""
    from sessionflow.client import shared_waits

    return [key for key in shared_waits.in_flight() if workflow_id in key]  # type: ignore[operator]


def test_the_slot_rule_keeps_a_reserve_for_tenants_that_hold_none() -> None:
    from sessionflow.errors import GatewayBusy, TooManyWaiting
    from sessionflow.gateway.slots import Slots

    slots = Slots(per_tenant=100, total=10, reserve=3)
    hog = [slots.take("hog") for _ in range(7)]
    with pytest.raises(TooManyWaiting) as refused:
        slots.take("hog")  # min(per_tenant, total - reserve) = 7
    assert refused.value.http_status == 429
    newcomers = [slots.take(t) for t in ("a", "b", "c")]  # one each, from the reserve
    with pytest.raises(GatewayBusy) as full:
        slots.take("d")
    assert full.value.http_status == 503
    for slot in (*hog, *newcomers):
        slot.release()
        slot.release()  # idempotent
    assert slots.held == 0
    capped = Slots(per_tenant=2, total=10, reserve=3)
    capped.take("x"), capped.take("x")
    with pytest.raises(TooManyWaiting):
        capped.take("x")
