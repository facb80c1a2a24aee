"""The gateway's JSON: history as AI SDK `UIMessage[]`, file and `data-*` parts, camelCase.

Checked with the AI SDK itself (npm `ai`): `validateUIMessages` accepts the history the
gateway answers, and its `Chat`, seeded with that history, carries on the conversation
through `/api/chat`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.gateway.app import create_app
from sessionflow.gateway.config import GatewayConfig
from sessionflow.gateway.limits import SMALL_BODY_BYTES
from sessionflow.messages import MAX_FILE_BYTES
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests import test_ai_sdk_compat
from tests.agents import LONG_TEXT, bash, streaming_agent
from tests.conftest import Gateway, StartWorker
from tests.serving import serving
from tests.sse import frames
from tests.test_ui_messages import PNG, data_url, installed, node, validate

# The fixture that installs the npm package `ai` (shared with tests/test_ai_sdk_compat.py).
ai_sdk = test_ai_sdk_compat.ai_sdk

# One turn with everything a history can hold: reasoning, text, a tool call that runs,
# one that fails (no such tool), one that needs an approval (denied); then short answers.
SHOWCASE = Script(
    name="showcase",
    delay=0,
    turns=[
        [
            ScriptStep(
                reasoning="Look before leaping.",
                text="Checking.",
                tool_calls=[
                    bash("echo hi"),
                    ScriptedToolCall(tool="Nope", input={}),
                    bash("rm -f notes.txt"),
                ],
            ),
            ScriptStep(text="Done: {last_tool_output}"),
        ],
        [ScriptStep(text="Turn {turn}: you said {last_user_text}.")],
    ],
)
showcase = agent(
    "showcase",
    model=SHOWCASE,
    tools=[bash_tool()],
    needs_approval={"Bash": lambda args: "rm " in args.command},
)
plain = agent("plain", model=Script(name="plain", delay=0, turns=[[ScriptStep(text="Got it.")]]))


@pytest.fixture
async def gw(start_worker: StartWorker) -> AsyncIterator[Gateway]:
    """A gateway with the default body limit (room for files) over the agents above."""
    client = await start_worker([showcase, plain, streaming_agent])
    keys = {"key-for-acme-0001": "acme"}
    config = GatewayConfig(api_keys=keys, default_agent="showcase", heartbeat_seconds=0.3)
    async with serving(create_app(client, config)) as url:
        yield Gateway(url=url, client=client, keys=keys)


async def wait_idle(gw: Gateway, sid: str, agent_name: str) -> None:
    session = gw.client.agent(agent_name).session(f"acme:{sid}")
    for _ in range(400):
        if not (await session.info()).busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("session did not become idle")


async def get_history(
    http: httpx.AsyncClient, gw: Gateway, sid: str, agent_name: str = "showcase"
) -> list[dict[str, Any]]:
    response = await http.get(
        f"{gw.url}/v1/sessions/{sid}/history?agent={agent_name}", headers=gw.headers()
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"messages", "offset", "count"}
    messages: list[dict[str, Any]] = body["messages"]
    return messages


# -- over HTTP -------------------------------------------------------------------------


async def test_history_is_ui_messages_the_ai_sdk_validates_and_its_chat_continues(
    gw: Gateway, unique_id: str, ai_sdk: Path
) -> None:
    base = f"{gw.url}/v1/sessions/{unique_id}"
    auth = gw.headers()
    png = data_url("image/png", PNG)
    user_parts = [
        {"type": "text", "text": "Look at this."},
        {"type": "file", "mediaType": "image/png", "url": png, "filename": "dot.png"},
        {"type": "data-ticket", "id": "t1", "data": {"priority": "high"}},
    ]
    async with httpx.AsyncClient(timeout=60) as http:
        # camelCase in the request, camelCase in the answer.
        sent = await http.post(
            f"{base}/messages",
            json={
                "message": {"id": "u-1", "role": "user", "parts": user_parts, "metadata": {"via": "test"}},
                "interruptIfStreaming": False,
                "sandboxId": None,
            },
            headers=auth,
        )  # fmt: skip
        assert sent.status_code == 202, sent.text
        assert set(sent.json()) == {"assistantMessageId"}
        answer_id = sent.json()["assistantMessageId"]
        approval_id = None
        async with http.stream("GET", f"{base}/stream", headers=auth) as response:
            async for frame in frames(response):
                if (
                    frame.data not in (None, "[DONE]")
                    and frame.chunk["type"] == "tool-approval-request"
                ):
                    approval_id = frame.chunk["approvalId"]
                    break
        assert approval_id is not None
        denied = await http.post(
            f"{base}/approvals",
            json={"approvalId": approval_id, "approved": False, "reason": "not that file"},
            headers=auth,
        )
        assert denied.status_code == 200, denied.text
        assert denied.json() == {"assistantMessageId": answer_id}
        await wait_idle(gw, unique_id, "showcase")
        outcome = await http.get(f"{base}/messages/{answer_id}/outcome", headers=auth)
        assert outcome.json() == {
            "messageId": answer_id,
            "done": True,
            "status": "finished",
            "error": None,
            "errorType": None,
        }

        history = await get_history(http, gw, unique_id)
        user, reply = history
        assert user == {
            "id": "u-1",
            "role": "user",
            "parts": [{**user_parts[0], "state": "done"}, *user_parts[1:]],
            "metadata": {"via": "test"},
        }
        assert reply["id"] == answer_id and reply["metadata"] == {"status": "complete"}
        types = [p["type"] for p in reply["parts"]]
        assert types == [
            "step-start", "reasoning", "text", "tool-Bash", "tool-Nope", "tool-Bash",
            "step-start", "text",
        ]  # fmt: skip
        _, reasoning, text, ran, failed, refused, _, last = reply["parts"]
        assert reasoning == {"type": "reasoning", "text": "Look before leaping.", "state": "done"}
        assert text == {"type": "text", "text": "Checking.", "state": "done"}
        assert ran["state"] == "output-available" and ran["output"]["stdout"] == "hi\n"
        assert ran["input"] == {"command": "echo hi"} and "approval" not in ran
        assert failed["state"] == "output-error" and "Nope" in failed["errorText"]
        assert set(failed) == {"type", "toolCallId", "state", "input", "errorText"}
        assert refused == {
            "type": "tool-Bash",
            "toolCallId": refused["toolCallId"],
            "state": "output-denied",
            "input": {"command": "rm -f notes.txt"},
            "approval": {"id": approval_id, "approved": False, "reason": "not that file"},
        }
        assert last["text"].startswith("Done: ")
        checked = await validate(ai_sdk, history)
        assert checked["ok"], checked["error"]
        assert checked["messages"] == history

        # The AI SDK's Chat, seeded with that history, continues through /api/chat.
        chat = await node(
            installed(ai_sdk, "ai_sdk_chat.mjs"),
            f"{gw.url}/api/chat?agent=showcase", next(iter(gw.keys)), unique_id, "and now?",
            stdin=history,
        )  # fmt: skip
        assert chat["error"] is None and chat["status"] == "ready"
        assert chat["messages"][:2] == history
        asked, answered = chat["messages"][2:]
        assert asked["role"] == "user" and asked["parts"] == [{"type": "text", "text": "and now?"}]
        await wait_idle(gw, unique_id, "showcase")
        after = await get_history(http, gw, unique_id)
        assert after[:2] == history and len(after) == 4
        assert after[2]["id"] == asked["id"] and after[3]["id"] == answered["id"]
        said = [p["text"] for p in after[3]["parts"] if p["type"] == "text"]
        assert said == ["Turn 2: you said and now?."]
        assert [p["text"] for p in answered["parts"] if p["type"] == "text"] == said
        assert (await validate(ai_sdk, after))["ok"]
        # Paging still works, on UIMessages.
        page = await http.get(f"{base}/history?offset=1&limit=2", headers=auth)
        assert page.json() == {"messages": after[1:3], "offset": 1, "count": 2}


async def test_snake_case_requests_still_work_and_answers_are_camel_case(
    gw: Gateway, unique_id: str
) -> None:
    base = f"{gw.url}/v1/sessions/{unique_id}"
    auth = gw.headers()
    async with httpx.AsyncClient(timeout=60) as http:
        sent = await http.post(
            f"{base}/messages?agent=plain",
            json={"message": "hi", "interrupt_if_streaming": False, "sandbox_id": None},
            headers=auth,
        )
        assert sent.status_code == 202, sent.text
        assert set(sent.json()) == {"assistantMessageId"}
        await wait_idle(gw, unique_id, "plain")
        history = await get_history(http, gw, unique_id, "plain")
        patched = await http.patch(
            f"{base}?agent=plain", json={"last_message_id": history[0]["id"]}, headers=auth
        )
        assert patched.status_code == 200, patched.text
        assert len(await get_history(http, gw, unique_id, "plain")) == 1
        # A wrong type under a snake_case name is named in the error, as declared.
        wrong = await http.post(
            f"{base}/messages?agent=plain", json={"message": "x", "sandbox_id": 5}, headers=auth
        )
        assert wrong.status_code == 422
        assert wrong.json()["error"]["message"].startswith("body.sandbox_id:")
        usage = (await http.get(f"{base}/usage?agent=plain", headers=auth)).json()
        assert set(usage) == {"total", "byModel", "steps", "turns"}
        assert set(usage["total"]) == {
            "inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "totalTokens",
            "cost",
        }  # fmt: skip
        listed = (await http.get(f"{gw.url}/v1/sessions", headers=auth)).json()["sessions"]
        (row,) = [r for r in listed if r["sessionId"] == unique_id]
        assert set(row) == {
            "sessionId", "agent", "status", "tokens", "pendingApprovals", "lastActivity", "uiUrl",
        }  # fmt: skip


async def test_interrupt_if_streaming_with_the_last_part_seen_over_http(
    gw: Gateway, unique_id: str
) -> None:
    """The reference's `interruptIfStreaming: {lastPart: {index, part}}`, in camelCase:
    the interrupted answer in history is what the user saw."""
    base = f"{gw.url}/v1/sessions/{unique_id}"
    auth = gw.headers()
    async with httpx.AsyncClient(timeout=60) as http:
        first = await http.post(
            f"{base}/messages?agent=streamer", json={"message": "long one"}, headers=auth
        )
        shown = ""
        async with http.stream("GET", f"{base}/stream?agent=streamer", headers=auth) as response:
            async for frame in frames(response):
                if frame.data not in (None, "[DONE]") and frame.chunk["type"] == "text-delta":
                    shown += frame.chunk["delta"]
                    if len(shown) >= 40:
                        break
        bad = await http.post(
            f"{base}/messages?agent=streamer",
            json={"message": "x", "interruptIfStreaming": {"lastPart": {"part": {}}}},
            headers=auth,
        )
        assert bad.status_code == 422 and "interrupt_if_streaming" in bad.text
        cut = {"lastPart": {"index": 1, "part": {"type": "text", "text": shown}}}
        second = await http.post(
            f"{base}/messages?agent=streamer",
            json={"message": "stop there", "interruptIfStreaming": cut},
            headers=auth,
        )
        assert second.status_code == 202, second.text
        await wait_idle(gw, unique_id, "streamer")
        _, answer, _, after = await get_history(http, gw, unique_id, "streamer")
        assert answer["id"] == first.json()["assistantMessageId"]
        assert answer["metadata"] == {"status": "interrupted"}
        assert answer["parts"] == [
            {"type": "step-start"},
            {"type": "text", "text": shown, "state": "done"},
        ]
        assert LONG_TEXT.startswith(shown) and len(shown) < len(LONG_TEXT)
        assert after["metadata"] == {"status": "complete"}


async def test_file_limits_over_http(gw: Gateway, unique_id: str) -> None:
    base = f"{gw.url}/v1/sessions/{unique_id}"
    auth = gw.headers()
    async with httpx.AsyncClient(timeout=120) as http:
        # A file of exactly the limit goes through, to history, by reference.
        exact = data_url("application/pdf", b"%PDF" + b"-" * (MAX_FILE_BYTES - 4))
        parts = [{"type": "text", "text": "read it"}, {"type": "file", "mediaType": "application/pdf", "url": exact}]  # fmt: skip
        sent = await http.post(
            f"{base}/messages?agent=plain", json={"message": parts}, headers=auth
        )
        assert sent.status_code == 202, sent.text
        await wait_idle(gw, unique_id, "plain")
        user, reply = await get_history(http, gw, unique_id, "plain")
        assert user["parts"][1] == parts[1]
        assert [p["text"] for p in reply["parts"] if p["type"] == "text"] == ["Got it."]

        # One byte more is refused with a clear 422, and nothing is added.
        over = data_url("application/pdf", b"%" * (MAX_FILE_BYTES + 1))
        refused = await http.post(
            f"{base}/messages?agent=plain",
            json={"message": [{"type": "file", "mediaType": "application/pdf", "url": over}]},
            headers=auth,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_input"
        assert f"at most {MAX_FILE_BYTES} bytes (5 MiB) once decoded" in refused.text
        assert len(await get_history(http, gw, unique_id, "plain")) == 2

        # Routes that take no message take small bodies only.
        big = json.dumps({"approvalId": "x" * SMALL_BODY_BYTES, "approved": True})
        too_big = await http.post(
            f"{base}/approvals?agent=plain",
            content=big,
            headers={**auth, "content-type": "application/json"},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"

    # A body over the limit is refused from its declared length, before it is read.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
    writer.write(
        f"POST /v1/sessions/{unique_id}/messages?agent=plain HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {auth['authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {GatewayConfig().max_body_bytes + 1}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.read(), 10)  # the gateway closes the connection
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"payload_too_large" in head
