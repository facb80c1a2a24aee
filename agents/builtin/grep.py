"""Grep: search file contents with a regular expression, in the sandbox.

`grep -r` runs in the sandbox, so it sees files the way commands do, and never leaves
the workspace. It follows no symlink: `-r` skips those it meets, and the `path` it is
given is walked into one component at a time in the same shell that runs grep, each
refused if it is a symlink, and the directory reached checked (`pwd -P`) to lie under
the workspace before grep starts there, so a directory swapped for a symlink meanwhile
cannot take it out. A single file is read through `dd iflag=nofollow`. Its output is
bounded: `MAX_OUTPUT_BYTES` from grep, then `MAX_OUTPUT_LINES` lines of at most
`MAX_LINE_CHARS` characters.
"""

from __future__ import annotations

import shlex
from fnmatch import fnmatchcase

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool

MAX_OUTPUT_LINES = 500
MAX_OUTPUT_BYTES = 48 * 1024  # below the sandboxes' own 64 KiB output cap
MAX_LINE_CHARS = 1_000
# The exit status of the script's own refusals (grep uses 0, 1 and 2).
_REFUSED = 3
# A writer cut off by `head -c` dies of SIGPIPE.
_SIGPIPE_EXIT = 128 + 13
_LINE_CUT = " [line cut]"


class GrepInput(BaseModel):
    pattern: str = Field(min_length=1, description="Extended regular expression.")
    path: str = Field(default=".", description="File or directory relative to the workspace.")
    glob: str | None = Field(default=None, description="Only files matching, e.g. '*.py'.")
    case_sensitive: bool = True
    context: int = Field(default=0, ge=0, le=20, description="Lines of context around matches.")


def _script(parts: list[str], grep: list[str]) -> str:
    """Walk into `parts` refusing symlinks, check that the place reached is under the
    workspace (the starting directory), then grep there: the directory recursively, or
    the one file through `dd iflag=nofollow`. The first line out says which: D or F."""
    lines = [
        'refuse() { echo "$1 $2" >&2; exit 3; }',
        "root=$(pwd -P) || exit 2",
        "kind=D",
    ]
    for index, name in enumerate(parts):
        q = shlex.quote(name)
        lines.append(f"[ -L {q} ] && refuse symlink {index}")
        if index < len(parts) - 1:
            lines.append(f"cd -P -- {q} 2>/dev/null || refuse missing {index}")
        else:
            lines += [
                f"if [ -d {q} ]; then cd -P -- {q} 2>/dev/null || refuse missing {index}",
                f"elif [ -f {q} ]; then kind=F; else refuse missing {index}; fi",
            ]
    lines += [
        "here=$(pwd -P) || exit 2",
        'case $here in "$root" | "$root"/*) ;; *) refuse outside 0 ;; esac',
        "echo $kind",
        'if [ "$kind" = D ]; then',
        # With no file operand, grep -r searches "." and names files plainly.
        f"  {shlex.join(['grep', '-r', *grep])} | head -c {MAX_OUTPUT_BYTES}",
        '  exit "${PIPESTATUS[0]}"',
        "fi",
    ]
    if parts:
        lines += [
            f"dd if={shlex.quote(parts[-1])} iflag=nofollow status=none"
            f" | {shlex.join(['grep', *grep])} | head -c {MAX_OUTPUT_BYTES}",
            'status=("${PIPESTATUS[@]}")',
            f"case ${{status[0]}} in 0 | {_SIGPIPE_EXIT}) ;; "
            f"*) refuse unreadable {len(parts) - 1} ;; esac",
            'exit "${status[1]}"',
        ]
    return "\n".join(lines)


def _refusal(path: str, parts: list[str], stderr: str) -> str:
    reason, _, index = (stderr.strip().splitlines() or [""])[-1].partition(" ")
    name = "/".join(parts[: int(index) + 1]) if index.isdigit() else path
    if reason == "symlink":
        return (
            f"{path!r} goes through the symlink {name!r}; Grep does not follow symlinks, so "
            "that none leads outside the workspace"
        )
    if reason == "outside":
        return f"{path!r} leads outside the workspace"
    if reason == "unreadable":
        return f"{path!r} could not be read (it changed while Grep ran?)"
    return f"no file or directory {name!r} in the workspace"


def _shown(line: str, prefix: str) -> str:
    if prefix and line != "--":  # "--" separates groups of context lines
        line = f"{prefix}/{line}"
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + _LINE_CUT


async def _grep(args: GrepInput, ctx: ToolContext) -> str:
    if args.path.startswith("/") or ".." in args.path.split("/"):
        raise ValueError(f"{args.path!r} leads outside the workspace")
    parts = [p for p in args.path.split("/") if p not in ("", ".")]
    grep = ["-En", "--color=never", "--binary-files=without-match", "--devices=skip"]
    if not args.case_sensitive:
        grep.append("-i")
    if args.context:
        grep.append(f"-C{args.context}")
    if args.glob:
        grep.append(f"--include={args.glob}")
    grep += ["-e", args.pattern]
    result = await ctx.sandbox.exec(_script(parts, grep), timeout=60)
    if result.exit_code == _REFUSED:
        raise ValueError(_refusal(args.path, parts, result.stderr))
    if result.exit_code == 1:
        return "no matches"
    kind, _, out = result.stdout.partition("\n")
    if kind == "F" and args.glob and not fnmatchcase(parts[-1], args.glob):
        return "no matches"  # grep applies --include to files it names, not to stdin
    cut = len(out.encode()) >= MAX_OUTPUT_BYTES
    # Cut off by `head`, grep dies of SIGPIPE (or, ignoring it, fails to write).
    if result.exit_code not in (0, _SIGPIPE_EXIT) and not (cut and result.exit_code == 2):
        raise ValueError(f"grep failed: {result.stderr.strip() or result.exit_code}")
    # Names are relative to the directory grep ran in; a single file's lines have none.
    prefix = "/".join(parts) if kind == "D" else ""
    lines = [_shown(line, prefix) for line in out.splitlines()]
    if cut and lines and not lines[-1].endswith(_LINE_CUT):
        lines[-1] += _LINE_CUT  # `head` stopped it mid-line
    if len(lines) > MAX_OUTPUT_LINES:
        more = len(lines) - MAX_OUTPUT_LINES
        past = f", and more past {MAX_OUTPUT_BYTES // 1024} KiB of output" if cut else ""
        lines = [*lines[:MAX_OUTPUT_LINES], f"[{more} more lines{past}; narrow the search]"]
    elif cut:
        lines.append(f"[output cut at {MAX_OUTPUT_BYTES // 1024} KiB; narrow the search]")
    return "\n".join(lines)


def grep_tool() -> Tool[GrepInput]:
    return tool(
        "Grep",
        "Search files for a regular expression; optional path, glob, case and context lines.",
        input_schema=GrepInput,
        execute=_grep,
    )
