"""Every chunk the gateway emits goes through the AI SDK's own parser unchanged.

Runs node with the npm package `ai` (installed on first use into .cache/ai-sdk):
`parseJsonEventStream` with `uiMessageChunkSchema`, then `readUIMessageStream`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.processes import REPO
from tests.sse import frames

CACHE = REPO / ".cache" / "ai-sdk"
CHECK = Path(__file__).with_name("ai_sdk_check.mjs")
# The module the Chat-driving scripts share; copied beside each.
CHAT_STATE = "ai_sdk_chat_state.mjs"
# The `ai` versions the README says the gateway supports: 7 (the tests' default), and
# 6 for the approval round trip. (5 has no tool approvals: its parser rejects them.)
SUPPORTED = ("7", "6")


def install_ai_sdk(major: str) -> Path:
    """A folder with `ai@<major>` installed (once; kept under .cache)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed, so the AI SDK parser cannot be run")
    folder = CACHE if major == "7" else CACHE.with_name(f"ai-sdk-{major}")
    if not (folder / "node_modules" / "ai" / "package.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"ai@{major}"],
            cwd=folder,
            check=True,
            timeout=300,
        )
    return folder


@pytest.fixture(scope="session")
def ai_sdk() -> Path:
    script = install_ai_sdk("7") / "check.mjs"
    shutil.copyfile(CHECK, script)
    return script


async def ai_sdk_read(script: Path, body: bytes) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=script.parent,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(body), timeout=60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def sse_body(
    http: httpx.AsyncClient, gw: Gateway, sid: str, agent: str, text: str
) -> tuple[bytes, list[str]]:
    base = f"{gw.url}/v1/sessions/{sid}"
    sent = await http.post(
        f"{base}/messages?agent={agent}", json={"message": text}, headers=gw.headers()
    )
    assert sent.status_code == 202, sent.text
    body = b""
    types: list[str] = []
    async with http.stream("GET", f"{base}/stream?agent={agent}", headers=gw.headers()) as response:
        async for raw in response.aiter_raw():
            body += raw
    async for frame in frames(_replay(body)):
        if frame.data and frame.data != "[DONE]":
            types.append(frame.chunk["type"])
    return body, types


class _replay:
    """An object with `aiter_lines`, over an already received body."""

    def __init__(self, body: bytes) -> None:
        self._lines = body.decode().split("\n")

    async def aiter_lines(self):  # type: ignore[no-untyped-def]
        for line in self._lines:
            yield line


async def test_the_ai_sdk_parses_every_chunk_the_gateway_emits(
    gateway: Gateway, unique_id: str, ai_sdk: Path
) -> None:
    seen: set[str] = set()
    async with httpx.AsyncClient(timeout=60) as http:
        # Reasoning, text, several tools (one unknown -> tool-output-error), statuses.
        body, types = await sse_body(http, gateway, unique_id + "-r", "reasoner", "think")
        seen.update(types)
        result = await ai_sdk_read(ai_sdk, body)
        assert result["failures"] == [], result["failures"]
        assert result["error"] is None
        reasoner = gateway.client.agent("reasoner").session(f"acme:{unique_id}-r")
        while (await reasoner.info()).busy:  # history trails the stream by a moment
            await asyncio.sleep(0.05)
        history = await reasoner.history()
        ui = result["message"]
        assert ui["id"] == history[-1].id
        ui_text = "".join(p["text"] for p in ui["parts"] if p["type"] == "text")
        assert ui_text == history[-1].text()
        ui_reasoning = [p["text"] for p in ui["parts"] if p["type"] == "reasoning"]
        assert ui_reasoning == ["Think first."]
        ui_tools = [p for p in ui["parts"] if p["type"].startswith("tool-")]
        assert [p["state"] for p in ui_tools] == [
            "output-available",
            "output-available",
            "output-error",
        ]
        assert [p.get("output", {}).get("stdout") for p in ui_tools[:2]] == ["hi\n", ""]

        # A retried step: data-retry.
        body, types = await sse_body(http, gateway, unique_id + "-f", "flaky", "hello")
        seen.update(types)
        result = await ai_sdk_read(ai_sdk, body)
        assert result["failures"] == []

        # A failing turn: error.
        body, types = await sse_body(http, gateway, unique_id + "-g", "misnamed", "anyone?")
        seen.update(types)
        result = await ai_sdk_read(ai_sdk, body)
        assert result["failures"] == []
        assert "ModelNotFound" in (result["error"] or "")

        # An approval denied, then an interrupted answer: tool-approval-request,
        # tool-output-denied, abort.
        sid = unique_id + "-a"
        base = f"{gateway.url}/v1/sessions/{sid}"
        await http.post(
            f"{base}/messages?agent=approver", json={"message": "go"}, headers=gateway.headers()
        )
        body = b""
        async with http.stream(
            "GET", f"{base}/stream?agent=approver", headers=gateway.headers()
        ) as response:
            async for raw in response.aiter_raw():
                body += raw
                if b"tool-approval-request" in body and body.endswith(b"\n\n"):
                    approval_id = body.split(b'"approvalId":"')[1].split(b'"')[0].decode()
                    await http.post(
                        f"{base}/approvals?agent=approver",
                        json={"approval_id": approval_id, "approved": False, "reason": "no"},
                        headers=gateway.headers(),
                    )
        types = [
            f.chunk["type"] async for f in frames(_replay(body)) if f.data and f.data != "[DONE]"
        ]
        seen.update(types)
        result = await ai_sdk_read(ai_sdk, body)
        assert result["failures"] == []
        (tool,) = [p for p in result["message"]["parts"] if p["type"] == "tool-Bash"]
        assert tool["state"] == "output-denied"

        await http.post(
            f"{base}/messages?agent=streamer", json={"message": "long"}, headers=gateway.headers()
        )
        body = b""
        async with http.stream(
            "GET", f"{base}/stream?agent=streamer", headers=gateway.headers()
        ) as response:
            async for raw in response.aiter_raw():
                body += raw
                if body.count(b"text-delta") == 5:
                    await http.post(f"{base}/interrupt?agent=streamer", headers=gateway.headers())
        types = [
            f.chunk["type"] async for f in frames(_replay(body)) if f.data and f.data != "[DONE]"
        ]
        seen.update(types)
        result = await ai_sdk_read(ai_sdk, body)
        assert result["failures"] == []

    assert seen >= {
        "start", "start-step", "finish-step", "finish", "text-start", "text-delta", "text-end",
        "reasoning-start", "reasoning-delta", "reasoning-end", "tool-input-start",
        "tool-input-delta", "tool-input-available", "tool-output-available", "tool-output-error",
        "tool-approval-request", "tool-output-denied", "error", "abort", "data-status", "data-retry",
    }  # fmt: skip


async def test_the_ai_sdk_chat_transport_talks_to_the_gateway_unchanged(
    gateway: Gateway, unique_id: str, ai_sdk: Path
) -> None:
    script = ai_sdk.with_name("transport.mjs")
    shutil.copyfile(Path(__file__).with_name("ai_sdk_transport.mjs"), script)
    key = next(iter(gateway.keys))
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), gateway.url, key, unique_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=script.parent,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    session = gateway.client.agent("tooling").session(f"acme:{unique_id}")
    while (await session.info()).busy:  # history trails the stream by a moment
        await asyncio.sleep(0.05)
    history = await session.history()
    assert history[0].id == f"u-{unique_id}" and history[0].text() == "hello from useChat"
    assert result["message"]["id"] == history[1].id
    text = "".join(p["text"] for p in result["message"]["parts"] if p["type"] == "text")
    assert text == history[1].text()
    assert result["resumed"] is False  # nothing active any more: the gateway answered 204


@pytest.mark.parametrize(
    ("version", "decision"), [("7", "approve"), ("7", "deny"), ("6", "approve")]
)
async def test_the_ai_sdk_approval_round_trip_through_api_chat(
    gateway: Gateway, unique_id: str, version: str, decision: str
) -> None:
    """The AI SDK's own approval flow, as its docs show it: the answer's stream ends at
    the approval request (the Chat is `ready`, not `streaming`), `addToolApprovalResponse`
    answers it, and `sendAutomaticallyWhen` posts the assistant message back, whose
    answered approval /api/chat applies before streaming the rest of the answer."""
    script = install_ai_sdk(version) / "approvals.mjs"
    shutil.copyfile(Path(__file__).with_name("ai_sdk_approvals.mjs"), script)
    shutil.copyfile(Path(__file__).with_name(CHAT_STATE), script.with_name(CHAT_STATE))
    key = next(iter(gateway.keys))
    api = f"{gateway.url}/api/chat?agent=approver"
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), api, key, unique_id, decision,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=script.parent,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["error"] is None, result
    assert result["parked"]["status"] == "ready", result["parked"]
    assert result["parked"]["state"] == "approval-requested", result["parked"]
    assert [(r["lastRole"], r["status"]) for r in result["requests"]] == [
        ("user", 200),
        ("assistant", 200),
    ]
    assert result["status"] == "ready"

    session = gateway.client.agent("approver").session(f"acme:{unique_id}")
    while (await session.info()).busy:  # history trails the stream by a moment
        await asyncio.sleep(0.05)
    history = await session.history()
    user, reply = result["messages"]
    assert [user["id"], reply["id"]] == [m.id for m in history]
    (tool,) = [p for p in reply["parts"] if p["type"] == "tool-Bash"]
    text = "".join(p["text"] for p in reply["parts"] if p["type"] == "text")
    # One message, continued where it stopped: its text once, as history has it.
    assert text == history[1].text()
    (part,) = history[1].tool_parts()
    assert part.approval is not None and part.approval.approved is (decision == "approve")
    if decision == "approve":
        assert tool["state"] == "output-available"
        assert tool["output"]["stdout"] == "approved-run\n"
        assert text.endswith("Result: approved-run")
    else:
        assert tool["state"] == "output-denied"
        assert part.approval.reason == "not today"
    # Nothing left to resume: the answer has ended.
    async with httpx.AsyncClient(timeout=30) as http:
        resumed = await http.get(
            f"{gateway.url}/api/chat/{unique_id}/stream?agent=approver", headers=gateway.headers()
        )
    assert resumed.status_code == 204


async def chat_chunks(
    http: httpx.AsyncClient, gw: Gateway, body: dict[str, Any]
) -> tuple[int, list[dict[str, Any]], bool]:
    """POST /api/chat: the status, the chunks, and whether `[DONE]` ended the stream."""
    chunks: list[dict[str, Any]] = []
    done = False
    async with http.stream(
        "POST", f"{gw.url}/api/chat?agent=approver", json=body, headers=gw.headers()
    ) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, [json.loads(response.text)], False
        async for frame in frames(response):
            if frame.data == "[DONE]":
                done = True
            elif frame.data:
                chunks.append(frame.chunk)
    return 200, chunks, done


async def test_api_chat_stops_at_an_approval_and_goes_on_once_it_is_answered(
    gateway: Gateway, unique_id: str
) -> None:
    user = {"id": f"u-{unique_id}", "role": "user", "parts": [{"type": "text", "text": "go"}]}
    async with httpx.AsyncClient(timeout=30) as http:
        status, chunks, done = await chat_chunks(
            http, gateway, {"id": unique_id, "messages": [user]}
        )
        assert status == 200 and done
        types = [c["type"] for c in chunks]
        # Up to the request, then `finish` at once: the turn waits, the stream does not.
        assert types[-3:] == ["tool-approval-request", "data-status", "finish"], types
        assert chunks[-1] == {"type": "finish", "finishReason": "tool-calls"}
        approval_id = chunks[-3]["approvalId"]
        # Nothing to resume while it waits for a person (the history shows the request).
        resumed = await http.get(
            f"{gateway.url}/api/chat/{unique_id}/stream?agent=approver", headers=gateway.headers()
        )
        assert resumed.status_code == 204
        history = await http.get(
            f"{gateway.url}/v1/sessions/{unique_id}/history?agent=approver",
            headers=gateway.headers(),
        )
        reply = history.json()["messages"][-1]
        (tool,) = [p for p in reply["parts"] if p["type"] == "tool-Bash"]
        assert tool["state"] == "approval-requested"

        # The assistant message back, but with nothing answered: refused, saying why.
        status, (problem,), _ = await chat_chunks(
            http, gateway, {"id": unique_id, "messages": [user, reply]}
        )
        assert status == 422 and "answers no tool approval" in problem["error"]["message"]

        tool["state"] = "approval-responded"
        tool["approval"] = {"id": approval_id, "approved": True}
        answered = {"id": unique_id, "messages": [user, reply], "messageId": reply["id"]}
        status, chunks, done = await chat_chunks(http, gateway, answered)
        assert status == 200 and done
        types = [c["type"] for c in chunks]
        # The same message, from where it stopped: its `start` again, then what followed.
        assert chunks[0] == {"type": "start", "messageId": reply["id"]}
        assert "tool-approval-request" not in types and types[-1] == "finish", types
        assert types.count("text-start") == 1  # the second step's text only
        outputs = [c for c in chunks if c["type"] == "tool-output-available"]
        assert outputs[-1]["output"]["stdout"] == "approved-run\n"

        # Sent again (a retry): the approval stands; the rest of the answer again.
        status, again, done = await chat_chunks(http, gateway, answered)
        assert status == 200 and done
        assert [c for c in again if c["type"] != "data-status"] == [
            c for c in chunks if c["type"] != "data-status"
        ]
        # An approval this session never asked for is refused.
        tool["approval"] = {"id": "approval-never-asked", "approved": True}
        status, (problem,), _ = await chat_chunks(http, gateway, answered)
        assert (status, problem["error"]["code"]) == (409, "approval_not_pending"), problem
