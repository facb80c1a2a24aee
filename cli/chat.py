"""`sessionflow chat` and `sessionflow tail`: a session in the terminal.

Chat reads lines from the terminal and sends them; answers stream as they are
written; approval requests become a y/N prompt. Ctrl-C interrupts the running
turn, a second Ctrl-C (or Ctrl-C at the prompt, or end of input) exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import click
from redis.exceptions import RedisError

from sessionflow.chunks import SESSION_END_TYPE, ToolApprovalRequestChunk, ToolInputAvailableChunk
from sessionflow.cli.safe_text import line_text
from sessionflow.cli.terminal import TerminalRenderer
from sessionflow.client.session import Session
from sessionflow.errors import StreamUnavailable
from sessionflow.streams.ended_runs import RUN_END_SOURCE
from sessionflow.streams.reader import StreamEvent, StreamReader

T = TypeVar("T")


async def _ask(prompt: str) -> str | None:
    """A line from the terminal without blocking the event loop; None at end of input.

    The read happens on a daemon thread: a blocked read must not keep the process
    alive when the user quits (the default executor would be waited for at exit).
    """
    click.echo(prompt, nl=False)
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not answer.done():
            answer.set_result(line)

    def read() -> None:
        loop.call_soon_threadsafe(deliver, sys.stdin.readline())

    threading.Thread(target=read, daemon=True).start()
    line = await answer
    return line.rstrip("\n") if line else None


class Chat:
    def __init__(self, session: Session) -> None:
        self._session = session
        # Interactive: always live (a retried step's output is erased, not held back).
        self._renderer = TerminalRenderer(live=True)
        self._turn: asyncio.Task[None] | None = None
        self._interrupted = False
        self._quit = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_ctrl_c)
        click.echo(
            f"Chatting with {line_text(self._session.agent)!r} in session "
            f"{line_text(self._session.id)!r}. "
            "Ctrl-C interrupts an answer; Ctrl-C again, or Ctrl-D, quits."
        )
        while not self._quit.is_set():
            line = await self._until_quit(_ask(click.style("you> ", bold=True)))
            if line is None:
                break
            if not line.strip():
                continue
            self._interrupted = False
            self._turn = asyncio.create_task(self._answer(line))
            await self._until_quit(self._turn)
            self._turn = None
        click.echo("\nbye")

    async def _until_quit(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None if the user quits first (the work is cancelled)."""
        task = asyncio.ensure_future(work)
        quitting = asyncio.create_task(self._quit.wait())
        done, _ = await asyncio.wait({task, quitting}, return_when=asyncio.FIRST_COMPLETED)
        quitting.cancel()
        if task not in done:
            task.cancel()
            return None
        return task.result()

    def _on_ctrl_c(self) -> None:
        if self._turn is not None and not self._interrupted:
            self._interrupted = True
            click.echo(click.style("\n[interrupting]", fg="yellow"))
            interrupting = asyncio.create_task(self._session.interrupt())
            self._background.add(interrupting)
            interrupting.add_done_callback(self._background.discard)
        else:
            self._quit.set()

    async def _answer(self, text: str) -> None:
        result = await self._session.send(text)
        tools: dict[str, ToolInputAvailableChunk] = {}
        async for event in result.stream():
            self._renderer.render(event)
            chunk = event.chunk
            if isinstance(chunk, ToolInputAvailableChunk):
                tools[chunk.tool_call_id] = chunk
            if isinstance(chunk, ToolApprovalRequestChunk):
                await self._approve(chunk, tools.get(chunk.tool_call_id))

    async def _approve(
        self, request: ToolApprovalRequestChunk, call: ToolInputAvailableChunk | None
    ) -> None:
        name = line_text(call.tool_name) if call else "a tool"
        answer = await _ask(click.style(f"  Allow {name}? [y/N] ", fg="magenta"))
        approved = (answer or "").strip().lower() in ("y", "yes")
        reason = None
        if not approved and answer:
            reason = answer.strip() if answer.strip().lower() not in ("n", "no") else None
        await self._session.send(
            {
                "type": "approval",
                "approval": {
                    "approval_id": request.approval_id,
                    "approved": approved,
                    "reason": reason,
                },
            }
        )


async def tail(
    reader: StreamReader, workflow_id: str, after: str | None, retry_seconds: float = 1.0
) -> AsyncIterator[StreamEvent]:
    """Follow a session's stream forever, reconnecting after Redis errors from the last
    event seen, so nothing is missed or repeated across a disconnect. (The reader rides
    out short outages by itself and gives up with `StreamUnavailable` after 30 s; this
    keeps trying past that.) Ends once the session has: after its `data-session-end`
    (closed, expired or deleted; a later session under the id is another one), or the
    `error` that records a run closed mid-answer (terminated, say:
    `streams.ended_runs`): nothing more will come."""
    cursor = after
    ended = False
    while True:
        try:
            async for event in reader.read(workflow_id, after=cursor, follow=True):
                cursor = event.id
                ended = ended or event.source == RUN_END_SOURCE or event.type == SESSION_END_TYPE
                yield event
            if ended:
                return
        except (StreamUnavailable, RedisError, OSError) as err:
            said = line_text(str(err))
            click.echo(click.style(f"[disconnected: {said}; reconnecting]", fg="yellow"), err=True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(retry_seconds)
