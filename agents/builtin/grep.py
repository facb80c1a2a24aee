"""Grep: search file contents with a regular expression, in the sandbox.

`grep -r` runs in the sandbox, so it sees files the way commands do, and never leaves
the workspace. It follows no symlink: `-r` skips those it meets, and the `path` it is
given is walked into one component at a time in the same shell that runs grep, each
refused if it is a symlink, and the directory reached checked (`pwd -P`) to lie under
the workspace before grep starts there, so a directory swapped for a symlink meanwhile
cannot take it out. A single file is read through `dd iflag=nofollow`. Its output is
bounded: `MAX_OUTPUT_BYTES` from grep, then `MAX_OUTPUT_LINES` lines of at most
`MAX_LINE_CHARS` characters.

So is its work, since a search holds a worker's activity slot while it runs: a
directory is walked by `find` (which, like `grep -r`, follows no symlink and skips
devices and FIFOs) and searched by `grep` in batches, taking at most `MAX_FILES`
files and `MAX_BYTES` bytes of them (a file that would pass the byte budget is
skipped, and counted); a single file is searched in its first `MAX_BYTES`; and the
whole search stops after `MAX_SECONDS`. Each bound that cut a search is named in a
marker after its matches, so the model knows to narrow it.
"""

from __future__ import annotations

import shlex
from fnmatch import fnmatchcase

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool

MAX_OUTPUT_LINES = 500
MAX_OUTPUT_BYTES = 48 * 1024  # below the sandboxes' own 64 KiB output cap
MAX_LINE_CHARS = 1_000
MAX_FILES = 20_000
MAX_BYTES = 256 * 1024 * 1024
MAX_SECONDS = 10
# The exit status of the script's own refusals (grep uses 0, 1 and 2).
_REFUSED = 3
# A writer cut off by `head -c` dies of SIGPIPE.
_SIGPIPE_EXIT = 128 + 13
# What `timeout` exits with when it stopped the search.
_TIMED_OUT = 124
_LINE_CUT = " [line cut]"
_MIB = 1024 * 1024


class GrepInput(BaseModel):
    pattern: str = Field(min_length=1, description="Extended regular expression.")
    path: str = Field(default=".", description="File or directory relative to the workspace.")
    glob: str | None = Field(default=None, description="Only files matching, e.g. '*.py'.")
    case_sensitive: bool = True
    context: int = Field(default=0, ge=0, le=20, description="Lines of context around matches.")


def _pick() -> str:
    """A shell function that reads `<size> <path>` records (NUL-ended) from `find` and
    passes on the paths that fit the file and byte budgets, until the deadline, and
    says on stderr what it cut."""
    return f"""pick() {{
      local seen=0 total=0 skipped=0 record size
      while IFS= read -r -d '' record; do
        if (( seen >= {MAX_FILES} )); then echo "limit files" >&2; break; fi
        if (( SECONDS >= {MAX_SECONDS} )); then echo "limit time" >&2; break; fi
        seen=$((seen + 1))
        size=${{record%% *}}
        if (( total + size > {MAX_BYTES} )); then skipped=$((skipped + 1)); continue; fi
        total=$((total + size))
        printf '%s\\0' "${{record#* }}"
      done
      (( skipped == 0 )) || echo "skipped $skipped" >&2
    }}"""


def _script(parts: list[str], grep: list[str], glob: str | None) -> str:
    """Walk into `parts` refusing symlinks, check that the place reached is under the
    workspace (the starting directory), then grep there: the directory's files, or
    the one file through `dd iflag=nofollow`, within the budgets. The first line out
    says which: D or F. A bad pattern exits 2 with grep's message."""
    lines = [
        'refuse() { echo "$1 $2" >&2; exit 3; }',
        _pick(),
        "root=$(pwd -P) || exit 2",
        "kind=D",
        # A bad pattern is grep's own error, not "no matches" in every batch.
        f"{shlex.join(['grep', '-q', *grep])} </dev/null; [ $? -ge 2 ] && exit 2",
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
    named = f" -name {shlex.quote(glob)}" if glob else ""
    lines += [
        "here=$(pwd -P) || exit 2",
        'case $here in "$root" | "$root"/*) ;; *) refuse outside 0 ;; esac',
        "echo $kind",
        'if [ "$kind" = D ]; then',
        # Paths as `grep -r` with no file operand names them: relative, no "./".
        f"  find . -mindepth 1 -type f{named} -printf '%s %P\\0' 2>/dev/null | pick"
        f" | timeout {MAX_SECONDS} {shlex.join(['xargs', '-0', '-r', 'grep', '-Hs', *grep, '--'])}"
        f" | head -c {MAX_OUTPUT_BYTES}",
        '  [ "${PIPESTATUS[2]}" = 124 ] && echo "limit time" >&2',
        "  exit 0",
        "fi",
    ]
    if parts:
        lines += [
            f"dd if={shlex.quote(parts[-1])} iflag=nofollow status=none | head -c {MAX_BYTES}"
            f" | timeout {MAX_SECONDS} {shlex.join(['grep', *grep])} | head -c {MAX_OUTPUT_BYTES}",
            'status=("${PIPESTATUS[@]}")',
            f"case ${{status[0]}} in 0) ;; {_SIGPIPE_EXIT}) echo 'limit bytes' >&2 ;; "
            f"*) refuse unreadable {len(parts) - 1} ;; esac",
            '[ "${status[2]}" = 124 ] && echo "limit time" >&2',
            'exit "${status[2]}"',
        ]
    return "\n".join(lines)


def _limits(stderr: str, *, output_cut: bool) -> list[str]:
    """Markers for the budgets the script says cut the search."""
    said = set(stderr.splitlines())
    notes = []
    if "limit files" in said:
        notes.append(f"Grep stopped after {MAX_FILES:,} files")
    if "limit time" in said:
        notes.append(f"Grep stopped after {MAX_SECONDS} seconds")
    skipped = next((line.split()[1] for line in said if line.startswith("skipped ")), None)
    if skipped is not None:
        notes.append(
            f"{int(skipped):,} files were skipped: with them the search would read more than "
            f"{MAX_BYTES // _MIB} MiB"
        )
    if "limit bytes" in said and not output_cut:
        notes.append(f"only the file's first {MAX_BYTES // _MIB} MiB were searched")
    return [f"[{note}; narrow the search with path or glob]" for note in notes]


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
    grep += ["-e", args.pattern]
    # The deadline is the script's; the command's own timeout is only a backstop.
    script = _script(parts, grep, args.glob)
    result = await ctx.sandbox.exec(script, timeout=MAX_SECONDS + 20)
    if result.exit_code == _REFUSED:
        raise ValueError(_refusal(args.path, parts, result.stderr))
    kind, _, out = result.stdout.partition("\n")
    if kind == "F" and args.glob and not fnmatchcase(parts[-1], args.glob):
        return "no matches"  # the glob names files; a file it does not match has none
    cut = len(out.encode()) >= MAX_OUTPUT_BYTES
    # Cut off by `head`, grep dies of SIGPIPE (or, ignoring it, fails to write); a
    # file's search ends 1 for no match (a directory's 0 either way), or 124 at the
    # deadline.
    if result.exit_code not in (0, 1, _TIMED_OUT, _SIGPIPE_EXIT) and not (
        cut and result.exit_code == 2
    ):
        raise ValueError(f"grep failed: {_grep_error(result.stderr) or result.exit_code}")
    limits = _limits(result.stderr, output_cut=cut)
    if not out:
        return "\n".join(["no matches", *limits])
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
    return "\n".join([*lines, *limits])


def _grep_error(stderr: str) -> str:
    """grep's own message, without the script's notes about budgets."""
    notes = ("limit ", "skipped ")
    return "\n".join(
        line for line in stderr.strip().splitlines() if not line.startswith(notes)
    ).strip()


def grep_tool() -> Tool[GrepInput]:
    return tool(
        "Grep",
        "Search files for a regular expression; optional path, glob, case and context lines.",
        input_schema=GrepInput,
        execute=_grep,
        sandbox=True,
    )
