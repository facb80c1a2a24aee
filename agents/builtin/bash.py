"""Bash: run a shell command in the session's sandbox, its output streamed as it comes."""

from __future__ import annotations

import asyncio
import json
import time

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool
from sessionflow.sandbox.base import ExecResult

MAX_TIMEOUT_SECONDS = 600.0
# Preliminary output is resent whole each time (the AI SDK replaces it), and each
# update stays in Redis for the stream's lifetime: updates are throttled, further
# apart as a command goes on (x1.1 each, up to `_PROGRESS_MAX_INTERVAL`), and carry
# only the tail of each stream, measured as JSON (a control character is six bytes
# there). The activity's stream budget bounds the total (`sessionflow.streams.budget`).
_PROGRESS_INTERVAL = 0.2
_PROGRESS_MAX_INTERVAL = 2.0
_PROGRESS_BACKOFF = 1.1
PROGRESS_TAIL_BYTES = 4 * 1024


def json_tail(text: str, max_bytes: int) -> str:
    """An end of `text` whose JSON string form, in UTF-8, is at most `max_bytes` bytes
    (quotes aside): all of it if it fits."""
    tail = text[-max_bytes:]
    while tail and (over := _json_size(tail) - max_bytes) > 0:
        # No character takes more than six bytes (`\\u001b`): drop at least enough.
        tail = tail[(over + 5) // 6 :]
    return tail


def _json_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


class _Tail:
    """The last `keep` characters of an output stream, held without growing: the
    command's whole output reaches the result through the sandbox's capped capture,
    while a backend's callbacks may see far more."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._text = ""

    def add(self, text: str) -> None:
        self._text = (self._text + text)[-self._keep :]

    def shown(self) -> str:
        return json_tail(self._text, PROGRESS_TAIL_BYTES)


class BashInput(BaseModel):
    command: str = Field(description="The shell command to run, with bash.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds before the command and everything it started are killed.",
    )


async def _execute(args: BashInput, ctx: ToolContext) -> ExecResult:
    out = _Tail(PROGRESS_TAIL_BYTES)
    err = _Tail(PROGRESS_TAIL_BYTES)
    last = 0.0
    interval = _PROGRESS_INTERVAL

    def progress() -> None:
        nonlocal last, interval
        now = time.monotonic()
        if now - last >= interval:
            last = now
            interval = min(interval * _PROGRESS_BACKOFF, _PROGRESS_MAX_INTERVAL)
            ctx.stream_output({"stdout": out.shown(), "stderr": err.shown()})

    def on_stdout(text: str) -> None:
        out.add(text)
        progress()

    def on_stderr(text: str) -> None:
        err.add(text)
        progress()

    command = asyncio.ensure_future(
        ctx.sandbox.exec(
            args.command, timeout=args.timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )
    )
    # An interrupt stops the command at once: it has nothing to clean up that killing
    # it does not (the output so far is already in the stream and the interrupted
    # call's text), so it does not sit out the tool's grace period.
    stopped = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({command, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not command.done():
            command.cancel()
            await asyncio.wait({command})
    if command.cancelled():
        raise asyncio.CancelledError
    return command.result()


def bash_tool() -> Tool[BashInput]:
    return tool(
        "Bash",
        "Run a bash command in the workspace. Returns exit_code, stdout and stderr; "
        "a non-zero exit code is a normal result. Output is capped; progress streams as it "
        "comes, up to a byte budget.",
        input_schema=BashInput,
        execute=_execute,
        sandbox=True,
    )
