"""The HTTP gateway: REST, SSE resume, tenants, auth and bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from sessionflow.chunks import parse_chunk
from sessionflow.streams.assemble import assemble
from sessionflow.streams.reader import StreamEvent
from sessionflow.ui_messages import to_ui_message
from tests.conftest import Gateway
from tests.sse import Frame, frames

JSON = {"content-type": "application/json"}
SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}


def as_events(collected: list[Frame]) -> list[StreamEvent]:
    """Frames back into events (message/step/attempt are not on the wire; the
    assembler only needs them for retries, which these tests do not cause)."""
    return [
        StreamEvent(id=f.id or "", chunk=parse_chunk(f.chunk), message_id="", step=0, attempt=1)
        for f in collected
        if f.data not in (None, "[DONE]")
    ]


async def history(
    http: httpx.AsyncClient, gw: Gateway, sid: str, tenant: str = "acme", agent: str = "tooling"
) -> list[dict[str, Any]]:
    """The session's history as the gateway answers it: AI SDK UIMessages."""
    response = await http.get(
        f"{gw.url}/v1/sessions/{sid}/history?agent={agent}", headers=gw.headers(tenant)
    )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def text_of(message: dict[str, Any]) -> str:
    """A UIMessage's text parts, joined."""
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


async def wait_idle(gw: Gateway, sid: str, agent: str = "tooling", tenant: str = "acme") -> None:
    session = gw.client.agent(agent).session(f"{tenant}:{sid}")
    for _ in range(200):
        if not (await session.info()).busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("session did not become idle")


async def test_send_and_stream_over_sse_equals_history(gateway: Gateway, unique_id: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            f"{gateway.url}/v1/sessions/{unique_id}/messages",
            json={"message": "make a file and read it"},
            headers=gateway.headers(),
        )
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["assistantMessageId"]
        async with http.stream(
            "GET", f"{gateway.url}/v1/sessions/{unique_id}/stream", headers=gateway.headers()
        ) as response:
            assert response.status_code == 200
            for name, value in SSE_HEADERS.items():
                assert response.headers[name] == value
            collected = [f async for f in frames(response) if f.comment is None]
        assert collected[-1].data == "[DONE]"
        assert all(f.id for f in collected[:-1])
        assert collected[0].chunk == {"type": "start", "messageId": message_id}
        # The stream runs a moment ahead of history: `finish` is published before the
        # workflow records the step. Compare once the turn is over.
        await wait_idle(gateway, unique_id)
        reply = (await history(http, gateway, unique_id))[-1]
        rebuilt = assemble(as_events(collected))
        assert to_ui_message(rebuilt.model_copy(update={"id": reply["id"]})) == reply


async def test_a_dropped_sse_connection_resumes_with_last_event_id(
    gateway: Gateway, unique_id: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(
            f"{gateway.url}/v1/sessions/{unique_id}/messages?agent=streamer",
            json={"message": "long answer please"},
            headers=gateway.headers(),
        )
        url = f"{gateway.url}/v1/sessions/{unique_id}/stream?agent=streamer"
        first: list[Frame] = []
        async with http.stream("GET", url, headers=gateway.headers()) as response:
            async for frame in frames(response):
                if frame.comment is None:
                    first.append(frame)
                if len(first) == 25:
                    break  # the connection drops mid-message
        assert first[-1].data != "[DONE]"
        resumed: list[Frame] = []
        headers = {**gateway.headers(), "last-event-id": first[-1].id or ""}
        async with http.stream("GET", url, headers=headers) as response:
            resumed = [f async for f in frames(response) if f.comment is None]
        # And once more with ?after=, from the same point: the same frames.
        async with http.stream(
            "GET", f"{url}&after={first[-1].id}", headers=gateway.headers()
        ) as response:
            again = [f async for f in frames(response) if f.comment is None]
        assert again == resumed
        everything = first + resumed
        ids = [f.id for f in everything if f.id]
        assert len(ids) == len(set(ids)), "a chunk was delivered twice"
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
        await wait_idle(gateway, unique_id, agent="streamer")
        reply = (await history(http, gateway, unique_id, agent="streamer"))[-1]
        rebuilt = assemble(as_events(everything))
        assert to_ui_message(rebuilt.model_copy(update={"id": reply["id"]})) == reply


async def test_idle_streams_get_comment_heartbeats(gateway: Gateway, unique_id: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(
            f"{gateway.url}/v1/sessions/{unique_id}/messages",
            json={"message": "hi"},
            headers=gateway.headers(),
        )
        await wait_idle(gateway, unique_id)
        comments = 0
        async with http.stream(
            "GET",
            f"{gateway.url}/v1/sessions/{unique_id}/stream?follow=true",
            headers=gateway.headers(),
        ) as response:
            async for frame in frames(response):
                if frame.comment is not None:
                    comments += 1
                    if comments == 2:
                        break
        assert comments == 2


async def test_tenants_cannot_reach_each_others_sessions(gateway: Gateway, unique_id: str) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            f"{base}/messages", json={"message": "acme's secret plan"}, headers=gateway.headers()
        )
        assert sent.status_code == 202
        await wait_idle(gateway, unique_id)
        other = gateway.headers("globex")
        for method, path in (
            ("GET", "/history"),
            ("GET", "/usage"),
            ("GET", "/stream"),
            ("POST", "/interrupt"),
        ):
            response = await http.request(method, base + path, headers=other)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["code"] == "session_not_found"
        approval = {"approvalId": "approval-x", "approved": True}
        response = await http.post(f"{base}/approvals", json=approval, headers=other)
        assert response.status_code == 404
        # Globex using the same id gets a session of its own.
        sent = await http.post(f"{base}/messages", json={"message": "globex"}, headers=other)
        assert sent.status_code == 202
        await wait_idle(gateway, unique_id, tenant="globex")
        acme = await history(http, gateway, unique_id)
        globex = await history(http, gateway, unique_id, tenant="globex")
        assert [text_of(m) for m in acme[0::2]] == ["acme's secret plan"]
        assert [text_of(m) for m in globex[0::2]] == ["globex"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong-key-123"}, {"authorization": "Basic a2V5OnZhbHVl"}],
)
async def test_requests_without_a_valid_key_get_401(
    gateway: Gateway, unique_id: str, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for method, path in (("GET", "/history"), ("POST", "/messages"), ("GET", "/stream")):
            response = await http.request(
                method, f"{gateway.url}/v1/sessions/{unique_id}{path}", headers=headers
            )
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        response = await http.post(f"{gateway.url}/api/chat", headers=headers, json={})
        assert response.status_code == 401


async def test_bad_input_gets_a_4xx_json_error_and_the_session_keeps_working(
    gateway: Gateway, unique_id: str
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    auth = gateway.headers()
    async with httpx.AsyncClient(timeout=30) as http:
        ok = await http.post(f"{base}/messages", json={"message": "first"}, headers=auth)
        assert ok.status_code == 202
        cases = [
            ("POST", "/messages", {"content": b"{not json", "headers": JSON}, 400, "malformed_json"),
            ("POST", "/messages", {"content": b"message=hi"}, 422, "invalid_request"),
            ("POST", "/messages", {"json": {"message": 42}}, 422, "invalid_request"),
            ("POST", "/messages", {"json": {"mesage": "typo"}}, 422, "invalid_request"),
            ("POST", "/messages", {"json": {"message": "   "}}, 422, "invalid_input"),
            ("POST", "/messages", {"json": {"message": {"role": "assistant", "parts": []}}}, 422, "invalid_input"),
            ("POST", "/messages", {"content": b"x" * (70 * 1024)}, 413, "payload_too_large"),
            ("POST", "/approvals", {"json": {"approvalId": "nope", "approved": True}}, 409, "approval_not_pending"),
            ("POST", "/approvals", {"json": {"approval_id": "nope", "approved": True}}, 409, "approval_not_pending"),
            ("POST", "/approvals", {"json": {"approvalId": "nope", "approved": "maybe"}}, 422, "invalid_request"),
            ("PATCH", "", {"json": {"lastMessageId": "msg_unknown"}}, 404, "message_not_found"),
            ("PATCH", "", {"json": {"last_message_id": "msg_unknown"}}, 404, "message_not_found"),
            ("GET", "/history?offset=-1", {}, 422, "invalid_request"),
            ("GET", "/stream?after=not-an-id", {}, 422, "invalid_input"),
            ("GET", "/nothing-here", {}, 404, "not_found"),
        ]  # fmt: skip
        await wait_idle(gateway, unique_id)
        for method, path, kwargs, status, code in cases:
            headers = {**auth, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
            response = await http.request(method, base + path, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == status, (path, kwargs, response.text)
            assert response.json()["error"]["code"] == code, response.text
            assert response.json()["error"]["message"]
        missing = await http.get(
            f"{gateway.url}/v1/sessions/{unique_id}-missing/history", headers=auth
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "session_not_found"
        ok = await http.post(f"{base}/messages", json={"message": "still works"}, headers=auth)
        assert ok.status_code == 202
        await wait_idle(gateway, unique_id)
        assert [text_of(m) for m in (await history(http, gateway, unique_id))[0::2]] == [
            "first",
            "still works",
        ]


async def test_approvals_interrupts_usage_and_update_over_rest(
    gateway: Gateway, unique_id: str
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    auth = gateway.headers()
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(f"{base}/messages?agent=approver", json={"message": "go"}, headers=auth)
        approval_id = None
        async with http.stream("GET", f"{base}/stream?agent=approver", headers=auth) as response:
            async for frame in frames(response):
                if (
                    frame.data
                    and frame.data != "[DONE]"
                    and frame.chunk["type"] == "tool-approval-request"
                ):
                    approval_id = frame.chunk["approvalId"]
                    break
        assert approval_id is not None
        answered = await http.post(
            f"{base}/approvals?agent=approver",
            json={"approvalId": approval_id, "approved": True},
            headers=auth,
        )
        assert answered.status_code == 200, answered.text
        assert set(answered.json()) == {"assistantMessageId"}
        await wait_idle(gateway, unique_id, agent="approver")
        usage = (await http.get(f"{base}/usage?agent=approver", headers=auth)).json()
        assert usage["total"]["outputTokens"] > 0 and len(usage["steps"]) == 2
        total = usage["total"]
        assert total["totalTokens"] == (
            total["inputTokens"]
            + total["outputTokens"]
            + total["cacheReadTokens"]
            + total["cacheWriteTokens"]
        )
        assert total["cost"] == 0  # the scripted model is free
        assert set(usage["steps"][0]) == {"messageId", "step", "model", "usage"}
        assert usage["byModel"]["scripted/approval"]["outputTokens"] > 0
        messages = (await http.get(f"{base}/history?agent=approver", headers=auth)).json()
        first_user = messages["messages"][0]["id"]
        patched = await http.patch(
            f"{base}?agent=approver", json={"lastMessageId": first_user}, headers=auth
        )
        assert patched.status_code == 200
        messages = (await http.get(f"{base}/history?agent=approver", headers=auth)).json()
        assert messages["count"] == 1
        # The step cap, per session: at least one step.
        for cap, status in ((0, 422), (-1, 422), (5, 200)):
            capped = await http.patch(
                f"{base}?agent=approver", json={"maxStepsPerTurn": cap}, headers=auth
            )
            assert capped.status_code == status, capped.text
        # The session itself: its sandbox (VibeKit's getSession), counts and status.
        info = (await http.get(f"{base}?agent=approver", headers=auth)).json()
        assert info["sessionId"] == unique_id and info["agent"] == "approver"
        assert info["sandboxId"] and info["messageCount"] == 1 and info["busy"] is False
        assert info["usage"]["outputTokens"] == usage["total"]["outputTokens"]
        assert info["pendingApprovals"] == []
        missing = await http.get(f"{gateway.url}/v1/sessions/nope-{unique_id}", headers=auth)
        assert missing.status_code == 404

        await http.post(f"{base}/messages?agent=streamer", json={"message": "long"}, headers=auth)
        async with http.stream("GET", f"{base}/stream?agent=streamer", headers=auth) as response:
            collected = []
            async for frame in frames(response):
                if frame.comment is not None:
                    continue
                collected.append(frame)
                if len(collected) == 10:
                    stop = await http.post(f"{base}/interrupt?agent=streamer", headers=auth)
                    assert stop.status_code == 202
        assert collected[-1].data == "[DONE]"
        assert collected[-2].chunk["type"] == "abort"


async def test_openapi_describes_the_rest_api(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        spec = (await http.get(f"{gateway.url}/openapi.json")).json()
    paths = spec["paths"]
    for path, method in (
        ("/v1/sessions/{session_id}/messages", "post"),
        ("/v1/sessions/{session_id}/approvals", "post"),
        ("/v1/sessions/{session_id}/interrupt", "post"),
        ("/v1/sessions/{session_id}/history", "get"),
        ("/v1/sessions/{session_id}/messages/{message_id}/outcome", "get"),
        ("/v1/sessions/{session_id}/usage", "get"),
        ("/v1/sessions/{session_id}", "patch"),
        ("/v1/sessions/{session_id}/fork", "post"),
        ("/v1/sessions/{session_id}/stream", "get"),
        ("/api/chat", "post"),
        ("/api/chat/{chat_id}/stream", "get"),
        ("/v1/sessions/{session_id}/schedules", "post"),
        ("/v1/sessions/{session_id}/schedules/{name}", "delete"),
        ("/v1/sessions/{session_id}/schedules/{name}/pause", "post"),
        ("/v1/schedules", "get"),
    ):
        assert method in paths[path], path
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    # Bodies use the AI SDK's camelCase, in requests and answers.
    schemas = spec["components"]["schemas"]
    for name, fields in {
        "SendBody": {
            "message", "interruptIfStreaming", "ifBusy", "context", "sandboxId", "budget", "webhookUrl",
        },
        "BudgetBody": {"inputTokens", "outputTokens", "cost"},
        "ForkBody": {"newId", "atMessageId"},
        "ForkResponse": {"sessionId"},
        "SendResponse": {"assistantMessageId"},
        "ApprovalBody": {"approvalId", "approved", "reason"},
        "UpdateBody": {"sandboxId", "lastMessageId", "maxStepsPerTurn", "webhookUrl"},
        "OutcomeResponse": {"messageId", "done", "status", "error", "errorType"},
        "TokenUsage": {
            "inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "totalTokens",
            "cost",
        },
        "UsageResponse": {"total", "byModel", "steps", "turns"},
        "TurnUsageBody": {"messageId", "steps", "usage"},
        "StepUsageBody": {"messageId", "step", "model", "usage"},
        "SessionRow": {
            "sessionId", "agent", "status", "tokens", "pendingApprovals", "lastActivity", "uiUrl",
        },
        "HistoryResponse": {"messages", "offset", "count"},
        "ChatRequest": {"id", "messages", "trigger", "messageId", "context", "budget"},
    }.items():  # fmt: skip
        assert set(schemas[name]["properties"]) == fields, name
    responses = {
        ("/v1/sessions/{session_id}/messages", "post", "202"): "SendResponse",
        ("/v1/sessions/{session_id}/usage", "get", "200"): "UsageResponse",
        ("/v1/sessions/{session_id}/history", "get", "200"): "HistoryResponse",
        ("/v1/sessions", "get", "200"): "SessionsResponse",
    }
    for (path, method, status), name in responses.items():
        content = paths[path][method]["responses"][status]["content"]["application/json"]
        assert content["schema"]["$ref"] == f"#/components/schemas/{name}", path


async def test_chat_transport_resume_answers_the_active_stream_or_204(
    gateway: Gateway, unique_id: str
) -> None:
    body = {
        "id": unique_id,
        "trigger": "submit-message",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "long"}]}],
    }
    resume = f"{gateway.url}/api/chat/{unique_id}/stream?agent=streamer"
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(resume, headers=gateway.headers())).status_code == 204
        async with http.stream(
            "POST", f"{gateway.url}/api/chat?agent=streamer", json=body, headers=gateway.headers()
        ) as response:
            assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
            async for frame in frames(response):
                if frame.data and frame.chunk["type"] == "text-delta":
                    break  # the page reloads mid-answer
        async with http.stream("GET", resume, headers=gateway.headers()) as response:
            assert response.status_code == 200
            resumed = [f async for f in frames(response) if f.comment is None]
        assert resumed[0].chunk["type"] == "start"
        assert resumed[-1].data == "[DONE]" and resumed[-2].chunk["type"] == "finish"
        assert (await http.get(resume, headers=gateway.headers())).status_code == 204

        # Regenerate: the answer to u1 is replaced, u1 is not duplicated.
        second = {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "two"}]}
        await http.post(
            f"{gateway.url}/api/chat?agent=streamer",
            json={"id": unique_id, "trigger": "submit-message", "messages": [second]},
            headers=gateway.headers(),
        )
        await wait_idle(gateway, unique_id, agent="streamer")
        regenerate = {
            "id": unique_id,
            "trigger": "regenerate-message",
            "messageId": "whatever",
            "messages": [second],
        }
        async with http.stream(
            "POST",
            f"{gateway.url}/api/chat?agent=streamer",
            json=regenerate,
            headers=gateway.headers(),
        ) as response:
            [f async for f in frames(response)]
        messages = await history(http, gateway, unique_id, agent="streamer")
        assert [m["id"] for m in messages[0::2]] == ["u1", "u2"]
        assert len(messages) == 4


async def test_a_closed_session_answers_writes_with_409_and_still_reads(
    gateway: Gateway, unique_id: str
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            f"{base}/messages", json={"message": "hi"}, headers=gateway.headers()
        )
        assert sent.status_code == 202
        await wait_idle(gateway, unique_id)
        await gateway.client.agent("tooling").session(f"acme:{unique_id}").close()

        approval = {"approvalId": "approval-x", "approved": True}
        for path, body in (("/approvals", approval), ("/interrupt", None)):
            response = await http.post(base + path, json=body, headers=gateway.headers())
            assert response.status_code == 409, (path, response.text)
            assert response.json()["error"]["code"] == "session_closed"
        message_id = sent.json()["assistantMessageId"]
        response = await http.get(
            f"{base}/messages/{message_id}/outcome?wait=5", headers=gateway.headers()
        )
        assert (response.status_code, response.json()["error"]["code"]) == (409, "session_closed")
        assert text_of((await history(http, gateway, unique_id))[0]) == "hi"
