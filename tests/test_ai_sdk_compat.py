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


@pytest.fixture(scope="session")
def ai_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed, so the AI SDK parser cannot be run")
    if not (CACHE / "node_modules" / "ai" / "package.json").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "ai@7"],
            cwd=CACHE,
            check=True,
            timeout=300,
        )
    script = CACHE / "check.mjs"
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
