"""Bash: run a shell command in the session's sandbox, its output streamed as it comes."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool
from sessionflow.sandbox.base import ExecResult

MAX_TIMEOUT_SECONDS = 600.0
# Preliminary output is resent whole each time (the AI SDK replaces it), so it is
# throttled and only the tail is sent.
_PROGRESS_INTERVAL = 0.2
_PROGRESS_TAIL_CHARS = 8_000


class BashInput(BaseModel):
    command: str = Field(description="The shell command to run, with bash.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds before the command and everything it started are killed.",
    )


async def _execute(args: BashInput, ctx: ToolContext) -> ExecResult:
    out: list[str] = []
    err: list[str] = []
    last = 0.0

    def progress() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _PROGRESS_INTERVAL:
            last = now
            ctx.stream_output(
                {
                    "stdout": "".join(out)[-_PROGRESS_TAIL_CHARS:],
                    "stderr": "".join(err)[-_PROGRESS_TAIL_CHARS:],
                }
            )

    def on_stdout(text: str) -> None:
        out.append(text)
        progress()

    def on_stderr(text: str) -> None:
        err.append(text)
        progress()

    return await ctx.sandbox.exec(
        args.command, timeout=args.timeout, on_stdout=on_stdout, on_stderr=on_stderr
    )


def bash_tool() -> Tool[BashInput]:
    return tool(
        "Bash",
        "Run a bash command in the workspace. Returns exit_code, stdout and stderr; "
        "a non-zero exit code is a normal result. Output is capped.",
        input_schema=BashInput,
        execute=_execute,
    )
