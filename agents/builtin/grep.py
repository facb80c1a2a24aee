"""Grep: search file contents with a regular expression, in the sandbox."""

from __future__ import annotations

import shlex

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool

MAX_OUTPUT_LINES = 500


class GrepInput(BaseModel):
    pattern: str = Field(min_length=1, description="Extended regular expression.")
    path: str = Field(default=".", description="File or directory relative to the workspace.")
    glob: str | None = Field(default=None, description="Only files matching, e.g. '*.py'.")
    case_sensitive: bool = True
    context: int = Field(default=0, ge=0, le=20, description="Lines of context around matches.")


async def _grep(args: GrepInput, ctx: ToolContext) -> str:
    if args.path.startswith("/") or ".." in args.path.split("/"):
        raise ValueError(f"{args.path!r} leads outside the workspace")
    command = ["grep", "-rEn", "--color=never", "--binary-files=without-match"]
    if not args.case_sensitive:
        command.append("-i")
    if args.context:
        command.append(f"-C{args.context}")
    if args.glob:
        command.append(f"--include={args.glob}")
    command += ["-e", args.pattern]
    if args.path.strip("/") not in ("", "."):
        command += ["--", args.path]  # without a path, grep searches "." and names files plainly
    result = await ctx.sandbox.exec(shlex.join(command), timeout=60)
    if result.exit_code == 1:
        return "no matches"
    if result.exit_code != 0:
        raise ValueError(f"grep failed: {result.stderr.strip() or result.exit_code}")
    lines = result.stdout.splitlines()
    if len(lines) > MAX_OUTPUT_LINES:
        more = len(lines) - MAX_OUTPUT_LINES
        lines = [*lines[:MAX_OUTPUT_LINES], f"[{more} more lines; narrow the search]"]
    return "\n".join(lines)


def grep_tool() -> Tool[GrepInput]:
    return tool(
        "Grep",
        "Search files for a regular expression; optional path, glob, case and context lines.",
        input_schema=GrepInput,
        execute=_grep,
    )
