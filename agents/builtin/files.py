"""Read, Write, Edit and List: file tools that work in the session's sandbox.

Paths are relative to the workspace; the sandbox refuses any that lead outside it.
Failures (a missing file, text not found) raise, and reach the model as tool errors.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sessionflow.agents.tools import Tool, ToolContext, tool

READ_LIMIT_LINES = 2000
READ_LIMIT_CHARS = 100_000


class ReadInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    offset: int = Field(default=1, ge=1, description="First line to read (1-based).")
    limit: int = Field(
        default=READ_LIMIT_LINES, ge=1, le=READ_LIMIT_LINES, description="Lines to read."
    )


async def _read(args: ReadInput, ctx: ToolContext) -> str:
    lines = (await ctx.sandbox.read_file(args.path)).splitlines()
    start = args.offset - 1
    shown: list[str] = []
    size = 0
    for number, line in enumerate(lines[start : start + args.limit], start=args.offset):
        row = f"{number:6d}\t{line}"
        if size + len(row) > READ_LIMIT_CHARS:
            break
        shown.append(row)
        size += len(row) + 1
    last = args.offset + len(shown) - 1
    if last < len(lines):
        shown.append(
            f"[truncated: showing lines {args.offset}-{last} of {len(lines)}; "
            f"read more with offset={last + 1}]"
        )
    return "\n".join(shown) if shown else f"[{args.path} has {len(lines)} lines]"


class WriteInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    content: str = Field(description="The whole new content of the file.")


async def _write(args: WriteInput, ctx: ToolContext) -> dict[str, object]:
    await ctx.sandbox.write_file(args.path, args.content)
    return {"path": args.path, "bytes": len(args.content.encode())}


class EditInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    old_string: str = Field(min_length=1, description="Exact text to replace.")
    new_string: str = Field(description="Replacement text.")
    replace_all: bool = Field(default=False, description="Replace every occurrence.")


async def _edit(args: EditInput, ctx: ToolContext) -> dict[str, object]:
    text = await ctx.sandbox.read_file(args.path)
    count = text.count(args.old_string)
    if count == 0:
        raise ValueError(f"old_string was not found in {args.path}; nothing was changed")
    if count > 1 and not args.replace_all:
        raise ValueError(
            f"old_string occurs {count} times in {args.path}; include more context to make "
            "it unique, or set replace_all"
        )
    await ctx.sandbox.write_file(args.path, text.replace(args.old_string, args.new_string))
    return {"path": args.path, "replacements": count if args.replace_all else 1}


class ListInput(BaseModel):
    path: str = Field(default=".", description="Directory relative to the workspace.")
    depth: int = Field(default=2, ge=1, le=10, description="Levels to descend.")


async def _list(args: ListInput, ctx: ToolContext) -> str:
    entries = await ctx.sandbox.list_files(args.path, args.depth)
    base = args.path.strip("/").removeprefix("./")
    lines = []
    for entry in entries:
        relative = entry.path[len(base) + 1 :] if base not in ("", ".") else entry.path
        indent = "  " * relative.count("/")
        name = relative.rsplit("/", 1)[-1]
        lines.append(f"{indent}{name}/" if entry.is_dir else f"{indent}{name} ({entry.size} B)")
    return "\n".join(lines) if lines else "(empty)"


def read_tool() -> Tool[ReadInput]:
    return tool(
        "Read",
        "Read a text file, with line numbers. Long files are truncated; the marker says "
        "how to read on.",
        input_schema=ReadInput,
        execute=_read,
    )


def write_tool() -> Tool[WriteInput]:
    return tool(
        "Write", "Create or overwrite a text file.", input_schema=WriteInput, execute=_write
    )


def edit_tool() -> Tool[EditInput]:
    return tool(
        "Edit",
        "Replace an exact, unique string in a file (or every occurrence with replace_all).",
        input_schema=EditInput,
        execute=_edit,
    )


def list_tool() -> Tool[ListInput]:
    return tool(
        "List", "List a directory as a tree, to a depth.", input_schema=ListInput, execute=_list
    )
