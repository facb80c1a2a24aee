"""Read, Write, Edit and List: file tools that work in the session's sandbox.

Paths are relative to the workspace; the sandbox refuses any that lead outside it or
go through a symlink. Failures (a missing file, text not found, a file too large) raise,
and reach the model as tool errors.

These run in the worker (or bring their results into it), which every tenant shares,
so each is bounded whatever the workspace holds, and says so when it cuts. Nothing
loads a whole large file into the worker: Read streams the lines it shows (at most
`READ_LIMIT_CHARS` of them) and looks no further than `READ_SCAN_BYTES` into a file;
Edit refuses files, and Write content, larger than `EDIT_MAX_BYTES`. List walks lazily
and stops at `LIST_MAX_ENTRIES` entries, `LIST_LIMIT_CHARS` characters of listing or
`LIST_SECONDS` of walking, whichever comes first.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool
from sessionflow.errors import FileTooLarge
from sessionflow.sandbox.base import (
    DEFAULT_LIST_SECONDS,
    DEFAULT_MAX_LIST_ENTRIES,
    DEFAULT_SCAN_BYTES,
)

_MIB = 1024 * 1024
READ_LIMIT_LINES = 2000
READ_LIMIT_CHARS = 100_000
# How far into a file Read looks to reach its offset and count the lines.
READ_SCAN_BYTES = DEFAULT_SCAN_BYTES
# The largest file Edit edits (and makes), and the largest content Write writes.
EDIT_MAX_BYTES = _MIB
WRITE_MAX_BYTES = EDIT_MAX_BYTES
# List shows at most this many entries and characters, and walks for at most this long.
LIST_MAX_ENTRIES = DEFAULT_MAX_LIST_ENTRIES
LIST_LIMIT_CHARS = READ_LIMIT_CHARS
LIST_SECONDS = DEFAULT_LIST_SECONDS


class ReadInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    offset: int = Field(default=1, ge=1, description="First line to read (1-based).")
    limit: int = Field(
        default=READ_LIMIT_LINES, ge=1, le=READ_LIMIT_LINES, description="Lines to read."
    )


async def _read(args: ReadInput, ctx: ToolContext) -> str:
    window = await ctx.sandbox.read_lines(
        args.path,
        offset=args.offset,
        limit=args.limit,
        max_bytes=READ_LIMIT_CHARS,
        scan_bytes=READ_SCAN_BYTES,
    )
    total = window.total_lines
    shown: list[str] = []
    size = 0
    for number, line in enumerate(window.lines, start=args.offset):
        row = f"{number:6d}\t{line}"
        if shown and size + len(row) > READ_LIMIT_CHARS:
            break
        shown.append(row)
        size += len(row) + 1
    if not shown:
        if total is None:
            raise ValueError(
                f"line {args.offset} of {args.path} is not within its first "
                f"{READ_SCAN_BYTES // _MIB} MiB, as far as Read looks; use Bash for what lies "
                f"further (e.g. sed -n '{args.offset},+99p' {args.path})"
            )
        return f"[{args.path} has {total} lines]"
    last = args.offset + len(shown) - 1
    more = total is None or last < total
    notes = []
    if more:
        counted = f" of {total}" if total is not None else ""
        notes.append(f"showing lines {args.offset}-{last}{counted}")
        if total is None:
            notes.append(
                f"the file is too large to count its lines (over {READ_SCAN_BYTES // _MIB} MiB)"
            )
    if window.cut and len(shown) == len(window.lines):
        notes.append(
            f"line {last} is longer than {READ_LIMIT_CHARS} characters; only its start is shown"
        )
    if notes:
        onward = f"; read more with offset={last + 1}" if more else ""
        shown.append(f"[truncated: {'; '.join(notes)}{onward}]")
    return "\n".join(shown)


class WriteInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    content: str = Field(description="The whole new content of the file (at most 1 MiB).")


async def _write(args: WriteInput, ctx: ToolContext) -> dict[str, object]:
    size = len(args.content.encode())
    if size > WRITE_MAX_BYTES:
        raise ValueError(
            f"content is {size} bytes; Write writes at most {WRITE_MAX_BYTES} bytes "
            f"({WRITE_MAX_BYTES // _MIB} MiB); nothing was written. Write a smaller file, or "
            "build a larger one in parts with Bash"
        )
    await ctx.sandbox.write_file(args.path, args.content)
    return {"path": args.path, "bytes": size}


class EditInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    old_string: str = Field(min_length=1, description="Exact text to replace.")
    new_string: str = Field(description="Replacement text.")
    replace_all: bool = Field(default=False, description="Replace every occurrence.")


async def _edit(args: EditInput, ctx: ToolContext) -> dict[str, object]:
    try:
        text = await ctx.sandbox.read_file(args.path, max_bytes=EDIT_MAX_BYTES)
    except FileTooLarge as err:
        what = f"{err.size} bytes" if err.size is not None else "larger than that"
        raise ValueError(
            f"{args.path} is {what}; Edit edits files of up to {EDIT_MAX_BYTES} bytes "
            f"({EDIT_MAX_BYTES // _MIB} MiB) and nothing was changed. Change larger files "
            "with Bash (sed, a script)"
        ) from None
    count = text.count(args.old_string)
    if count == 0:
        raise ValueError(f"old_string was not found in {args.path}; nothing was changed")
    if count > 1 and not args.replace_all:
        raise ValueError(
            f"old_string occurs {count} times in {args.path}; include more context to make "
            "it unique, or set replace_all"
        )
    replaced = count if args.replace_all else 1
    grows = len(args.new_string.encode()) - len(args.old_string.encode())
    size = len(text.encode()) + replaced * grows
    if size > EDIT_MAX_BYTES:
        raise ValueError(
            f"the edit would make {args.path} {size} bytes, more than the {EDIT_MAX_BYTES} "
            "bytes Edit writes; nothing was changed"
        )
    await ctx.sandbox.write_file(
        args.path, text.replace(args.old_string, args.new_string, replaced)
    )
    return {"path": args.path, "replacements": replaced}


class ListInput(BaseModel):
    path: str = Field(default=".", description="Directory relative to the workspace.")
    depth: int = Field(default=2, ge=1, le=10, description="Levels to descend.")


async def _list(args: ListInput, ctx: ToolContext) -> str:
    listing = await ctx.sandbox.list_files(
        args.path, args.depth, max_entries=LIST_MAX_ENTRIES, seconds=LIST_SECONDS
    )
    base = args.path.strip("/").removeprefix("./")
    lines: list[str] = []
    size = 0
    stopped: str | None = None
    for entry in listing.entries:
        relative = entry.path[len(base) + 1 :] if base not in ("", ".") else entry.path
        indent = "  " * relative.count("/")
        name = relative.rsplit("/", 1)[-1]
        row = f"{indent}{name}/" if entry.is_dir else f"{indent}{name} ({entry.size} B)"
        if size + len(row) > LIST_LIMIT_CHARS:
            stopped = f"listing stopped at {LIST_LIMIT_CHARS:,} characters"
            break
        lines.append(row)
        size += len(row) + 1
    if stopped is None and listing.cut == "entries":
        stopped = f"listing stopped at {LIST_MAX_ENTRIES:,} entries"
    elif stopped is None and listing.cut == "time":
        stopped = f"listing stopped after {LIST_SECONDS:g} seconds, with {len(lines):,} entries"
    if stopped is not None:
        lines.append(f"[truncated: {stopped}; list a subdirectory, or with a smaller depth]")
    return "\n".join(lines) if lines else "(empty)"


def read_tool() -> Tool[ReadInput]:
    return tool(
        "Read",
        "Read a text file, with line numbers. Long files are truncated; the marker says "
        "how to read on.",
        input_schema=ReadInput,
        execute=_read,
        sandbox=True,
    )


def write_tool() -> Tool[WriteInput]:
    return tool(
        "Write",
        "Create or overwrite a text file.",
        input_schema=WriteInput,
        execute=_write,
        sandbox=True,
    )


def edit_tool() -> Tool[EditInput]:
    return tool(
        "Edit",
        "Replace an exact, unique string in a file (or every occurrence with replace_all).",
        input_schema=EditInput,
        execute=_edit,
        sandbox=True,
    )


def list_tool() -> Tool[ListInput]:
    return tool(
        "List",
        f"List a directory as a tree, to a depth; at most {LIST_MAX_ENTRIES:,} entries (a "
        "marker says when it stopped).",
        input_schema=ListInput,
        execute=_list,
        sandbox=True,
    )
