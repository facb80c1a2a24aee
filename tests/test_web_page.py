"""The web page, in a real browser: headless Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.agents import LONG_TEXT
from tests.conftest import Gateway
from tests.processes import REPO

pytestmark = pytest.mark.slow

# A 1x1 PNG, as the AI SDK's file part.
DOT = {
    "type": "file",
    "mediaType": "image/png",
    "filename": "dot.png",
    "url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
}

ARTIFACTS = REPO / "test-artifacts"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("Debian's chromium is not installed here (.ci/run installs it where it can)")
    return path


async def test_the_page_streams_resumes_approves_and_interrupts(
    gateway: Gateway, unique_id: str, chromium: str
) -> None:
    from playwright.async_api import async_playwright, expect

    key = next(iter(gateway.keys))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        await page.goto(f"{gateway.url}/")
        await page.fill("#api-key", key)
        await page.locator("#api-key").dispatch_event("change")
        await page.fill("#agent", "streamer")
        await page.locator("#agent").dispatch_event("change")
        await page.fill("#session-id", unique_id)
        await page.click("#open-form button[type=submit]")
        await expect(page.locator("#session-title")).to_have_text(f"Session {unique_id}")

        # Send a message and watch the answer stream in.
        await page.fill("#message", "tell me everything")
        await page.click("#send")
        answer = page.locator(".message.assistant .text").first
        await expect(answer).to_contain_text("word10 ", timeout=20_000)
        partial = await answer.text_content()
        assert partial and len(partial) < len(LONG_TEXT), "the answer should still be streaming"

        # Reload mid-answer: the page resumes it, and the message completes exactly once.
        await page.reload()
        assistant = page.locator(".message.assistant")
        await expect(assistant.locator(".text")).to_have_text(LONG_TEXT, timeout=30_000)
        assert await assistant.count() == 1
        assert await page.locator(".message.user").count() == 1
        await expect(page.locator("#usage")).to_contain_text("tokens")

        # Approve a tool call with the buttons.
        await page.fill("#agent", "approver")
        await page.locator("#agent").dispatch_event("change")
        await page.fill("#session-id", unique_id + "-approve")
        await page.click("#open-form button[type=submit]")
        await page.fill("#message", "run the command")
        await page.click("#send")
        approve = page.locator("button.approve")
        await expect(approve).to_be_visible(timeout=20_000)
        await expect(page.locator(".tool .input")).to_contain_text("echo approved-run")
        # Reloaded while it waits: the request comes back from history, and approving
        # it streams the rest of the answer into the same message.
        await page.reload()
        await expect(approve).to_be_visible(timeout=20_000)
        await approve.click()
        await expect(page.locator(".message.assistant .text").last).to_contain_text(
            "Result: approved-run", timeout=20_000
        )
        await expect(page.locator(".tool .output")).to_contain_text("approved-run")
        await expect(page.locator(".message.assistant")).to_have_count(1)

        # Interrupt a turn.
        await page.fill("#agent", "streamer")
        await page.locator("#agent").dispatch_event("change")
        await page.fill("#session-id", unique_id + "-stop")
        await page.click("#open-form button[type=submit]")
        await page.fill("#message", "long again")
        await page.click("#send")
        await expect(page.locator(".message.assistant .text").first).to_contain_text(
            "word5 ", timeout=20_000
        )
        await page.click("#interrupt")
        await expect(page.locator(".message.assistant.interrupted")).to_have_count(
            1, timeout=10_000
        )

        # History is UIMessages: a file part the user sent shows as an image.
        async with httpx.AsyncClient(timeout=30) as http:
            sent = await http.post(
                f"{gateway.url}/v1/sessions/{unique_id}-file/messages?agent=streamer",
                json={"message": [{"type": "text", "text": "a dot"}, DOT]},
                headers=gateway.headers(),
            )
            assert sent.status_code == 202, sent.text
        await page.fill("#session-id", unique_id + "-file")
        await page.click("#open-form button[type=submit]")
        image = page.locator(".message.user img.file")
        await expect(image).to_have_attribute("alt", "dot.png", timeout=10_000)
        assert await image.get_attribute("src") == DOT["url"]
        await expect(page.locator(".message.assistant .text").first).to_have_text(
            LONG_TEXT, timeout=20_000
        )

        # Recent sessions, with status and a link into the Temporal UI.
        await page.click("#refresh")
        row = page.locator("#sessions li", has_text=unique_id + "-approve")
        await expect(row).to_contain_text("idle", timeout=10_000)
        link = await row.locator("a", has_text="Temporal UI").get_attribute("href")
        assert link and "/workflows/session%3Aapprover%3Aacme%3A" in link

        ARTIFACTS.mkdir(exist_ok=True)
        await page.locator("#sessions a.open", has_text=re.compile(f"^{unique_id}$")).click()
        await expect(page.locator(".message.assistant .text").first).to_have_text(
            LONG_TEXT, timeout=20_000
        )
        await expect(page.locator("#status")).to_have_text("idle", timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
        await browser.close()
    assert (ARTIFACTS / "web-page.png").stat().st_size > 10_000


async def test_assistant_markdown_renders_as_elements_and_markup_stays_text(
    gateway: Gateway, unique_id: str, chromium: str
) -> None:
    from playwright.async_api import async_playwright, expect

    key = next(iter(gateway.keys))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await page.goto(f"{gateway.url}/")
        await page.fill("#api-key", key)
        await page.locator("#api-key").dispatch_event("change")
        await page.fill("#agent", "markdown")
        await page.locator("#agent").dispatch_event("change")
        await page.fill("#session-id", unique_id)
        await page.click("#open-form button[type=submit]")
        await expect(page.locator("#session-title")).to_have_text(f"Session {unique_id}")

        async def check_markdown() -> None:
            answer = page.locator(".message.assistant .text.md").first
            await expect(answer.locator("pre code")).to_have_text(
                'print("<b>not bold</b>")', timeout=20_000
            )
            await expect(answer.locator("h2")).to_have_text("A plan")
            await expect(answer.locator("p strong")).to_have_text("bold")
            await expect(answer.locator("p em")).to_have_text("italic")
            await expect(answer.locator("p code")).to_have_text("inline code")
            await expect(answer.locator(":scope > ul > li")).to_have_count(2)
            await expect(answer.locator("ul ul > li")).to_have_text(["a nested item"])
            await expect(answer.locator("ol > li")).to_have_text(["one", "two"])
            link = answer.locator("a")
            await expect(link).to_have_text("the docs")
            assert await link.get_attribute("href") == "https://example.com/docs?a=1&b=2"
            assert await link.get_attribute("target") == "_blank"
            assert await link.get_attribute("rel") == "noopener noreferrer"
            assert await answer.locator("b, script, img").count() == 0
            # One part, drawn in place as it streamed: no stray copies or markers left.
            assert await page.locator(".message.assistant .text").count() == 1
            assert "**" not in (await answer.text_content() or "")

        await page.fill("#message", "show me markdown")
        await page.click("#send")
        drawn = await page.wait_for_selector(".message.assistant .text.md", timeout=20_000)
        await check_markdown()
        # Redrawn in place as deltas came, not replaced by another element.
        assert await drawn.evaluate("node => node.isConnected && !!node.querySelector('h2')")
        # The same from history, after a reload.
        await page.reload()
        await check_markdown()

        await page.fill("#message", "now something nasty")
        await page.click("#send")
        hostile = page.locator(".message.assistant .text.md").nth(1)
        await expect(hostile).to_contain_text("`<iframe src=x>`"[1:-1], timeout=20_000)
        await expect(hostile).to_contain_text('<img src=x onerror="window.pwned=1">')
        await expect(hostile).to_contain_text("<script>window.pwned=2</script>")
        await expect(hostile).to_contain_text("[click me](javascript:window.pwned=3)")
        await expect(hostile.locator("strong")).to_have_text(
            '<a href="javascript:window.pwned=4">bold</a>'
        )
        for answered in (hostile, page.locator("#messages")):
            assert await answered.locator("img, script, iframe, b").count() == 0
        hrefs = await page.locator("#messages a").evaluate_all("links => links.map(a => a.href)")
        assert hrefs == ["https://example.com/docs?a=1&b=2"], hrefs
        assert await page.evaluate("window.pwned") is None
        assert dialogs == []
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web-page-markdown.png"), full_page=True)
        await browser.close()


# -- the AI SDK's own useChat, in the browser -------------------------------------------

USE_CHAT = REPO / ".cache" / "ai-sdk-react"
USE_CHAT_PACKAGES = ["@ai-sdk/react@4", "react@19", "react-dom@19", "esbuild@0"]


@pytest.fixture(scope="session")
def use_chat_bundle() -> str:
    """tests/ai_sdk_use_chat.jsx bundled with React and @ai-sdk/react (installed from
    npm once, under .cache), as one script."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed, so useChat cannot be bundled")
    if not (USE_CHAT / "node_modules" / "@ai-sdk" / "react" / "package.json").exists():
        USE_CHAT.mkdir(parents=True, exist_ok=True)
        (USE_CHAT / "package.json").write_text('{"private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *USE_CHAT_PACKAGES],
            cwd=USE_CHAT,
            check=True,
            timeout=300,
        )
    entry = USE_CHAT / "app.jsx"
    shutil.copyfile(Path(__file__).with_name("ai_sdk_use_chat.jsx"), entry)
    bundled = USE_CHAT / "app.js"
    subprocess.run(
        [str(USE_CHAT / "node_modules" / ".bin" / "esbuild"), str(entry), "--bundle",
         "--format=iife", "--jsx=automatic", "--define:process.env.NODE_ENV=\"production\"",
         f"--outfile={bundled}", "--log-level=warning"],
        cwd=USE_CHAT, check=True, timeout=120,
    )  # fmt: skip
    return bundled.read_text()


@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_use_chat_approves_a_tool_call_through_api_chat(
    gateway: Gateway, unique_id: str, chromium: str, use_chat_bundle: str, decision: str
) -> None:
    """useChat in a real browser, its tool approval as the AI SDK docs show it: the
    answer stops at the request (useChat is `ready`, not `streaming`), a button calls
    `addToolApprovalResponse`, `sendAutomaticallyWhen` posts the answer to /api/chat,
    and the rest of the answer streams into the same message."""
    from playwright.async_api import async_playwright, expect

    key = next(iter(gateway.keys))
    chat = {"id": unique_id, "agent": "approver", "key": key}
    page_url = f"{gateway.url}/use-chat-test"
    html = (
        '<!doctype html><meta charset="utf-8"><div id="root"></div>'
        f"<script>window.CHAT = {json.dumps(chat)};</script>"
        f"<script>{use_chat_bundle}</script>"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        page = await browser.new_page()
        # The page itself is served on the gateway's origin, so /api/chat is same-origin.
        await page.route(page_url, lambda route: route.fulfill(content_type="text/html", body=html))
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        await page.goto(page_url)
        await expect(page.locator("#status")).to_have_text("ready")
        await page.click("#send")
        button = page.locator(f"button.{decision}")
        await expect(button).to_be_visible(timeout=20_000)
        await expect(page.locator(".tool")).to_have_attribute("data-state", "approval-requested")
        # The stream ended at the request: useChat is ready while a person decides.
        await expect(page.locator("#status")).to_have_text("ready", timeout=5_000)
        await button.click()
        tool = page.locator(".message.assistant .tool")
        if decision == "approve":
            await expect(tool).to_have_attribute("data-state", "output-available", timeout=20_000)
            await expect(tool.locator(".output")).to_have_text("approved-run")
            await expect(page.locator(".message.assistant .text").last).to_have_text(
                "Result: approved-run", timeout=20_000
            )
        else:
            await expect(tool).to_have_attribute("data-state", "output-denied", timeout=20_000)
        await expect(page.locator("#status")).to_have_text("ready", timeout=20_000)
        # One assistant message, continued in place; no error on the way.
        await expect(page.locator(".message.assistant")).to_have_count(1)
        assert await page.locator("#error").count() == 0
        assert errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"use-chat-{decision}.png"))
        await browser.close()
    session = gateway.client.agent("approver").session(f"acme:{unique_id}")
    while (await session.info()).busy:
        await asyncio.sleep(0.05)
    (part,) = (await session.history())[-1].tool_parts()
    assert part.approval is not None and part.approval.approved is (decision == "approve")
