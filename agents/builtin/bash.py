"""Bash: run a shell command in the session's sandbox."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.tools import Tool, ToolContext, tool
from sandbox.base import ExecResult

MAX_TIMEOUT_SECONDS = 600.0


class BashInput(BaseModel):
    command: str = Field(description="The shell command to run, with bash.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds before the command and everything it started are killed.",
    )


async def _execute(args: BashInput, ctx: ToolContext) -> ExecResult:
    return await ctx.sandbox.exec(args.command, timeout=args.timeout)


def bash_tool() -> Tool[BashInput]:
    return tool(
        "Bash",
        "Run a bash command in the workspace. Returns exit_code, stdout and stderr; "
        "a non-zero exit code is a normal result. Output is capped.",
        input_schema=BashInput,
        execute=_execute,
    )
