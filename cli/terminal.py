"""Rendering a session's stream in a terminal, for the CLI and the demo.

A retried step (`data-retry`) replaces what its failed attempt printed, as
`streams.assemble` drops it: on a terminal the abandoned output is erased and the new
attempt draws in its place; into a pipe or file, where nothing can be erased, the
model's output of each step is printed once the step has ended, so only the attempt
that counts is ever printed.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import click

from sessionflow.chunks import (
    TERMINAL_TYPES,
    AbortChunk,
    Chunk,
    DataChunk,
    ErrorChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    TextDeltaChunk,
    TextEndChunk,
    ToolInputAvailableChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)
from sessionflow.cli.safe_text import body_text, line_text
from sessionflow.messages import (
    DataPart,
    FilePart,
    Message,
    MessageStatus,
    ReasoningPart,
    TextPart,
    ToolPart,
    ToolState,
)
from sessionflow.streams.reader import StreamEvent

_OUTPUT_LINES = 12


def tool_summary(tool_input: Any) -> str:
    """A tool call's input on one line: a command as it is, anything else as JSON."""
    if isinstance(tool_input, dict) and isinstance(tool_input.get("command"), str):
        return str(tool_input["command"])
    return json.dumps(tool_input)


def _output_text(output: Any) -> str:
    if isinstance(output, dict) and "stdout" in output:
        text = str(output.get("stdout", "")) + str(output.get("stderr", ""))
        code = output.get("exit_code")
        return text if code in (0, None) else f"{text}(exit code {code})"
    return json.dumps(output, indent=2)


Piece = tuple[str, dict[str, Any]]


def _tool_output(lines: list[str], limit: int) -> list[Piece]:
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"… {len(lines) - limit} more lines")
    return [(f"    │ {line}\n", {"dim": True}) for line in shown]


def _tool_call(name: str, tool_input: Any, state: str = "") -> Piece:
    first, *rest = tool_summary(tool_input).splitlines() or [""]
    more = f" (+{len(rest)} lines)" if rest else ""
    return (f"  ▶ {line_text(name)}: {line_text(first)}{more}{state}\n", {"fg": "cyan"})


def _safe(pieces: list[Piece]) -> list[Piece]:
    """`pieces` as they may be printed: what a model, tool or user wrote can hold
    control sequences (see `sessionflow.cli.safe_text`); styles are added after."""
    return [(body_text(text), style) for text, style in pieces]


# Which writer produced output: (message id, step, source).
Writer = tuple[str, int, str]


@dataclass
class _Shown:
    """Output on screen, with who wrote it and the column it started at."""

    writer: Writer
    attempt: int
    column: int
    text: str


def _pieces(chunk: Chunk) -> list[Piece]:
    """What a chunk prints: text with its click style, control characters escaped."""
    return _safe(_chunk_pieces(chunk))


def _chunk_pieces(chunk: Chunk) -> list[Piece]:
    match chunk:
        case TextDeltaChunk(delta=delta):
            return [(delta, {})]
        case ReasoningDeltaChunk(delta=delta):
            return [(delta, {"dim": True, "italic": True})]
        case TextEndChunk() | ReasoningEndChunk():
            return [("\n", {})]
        case ToolInputAvailableChunk(tool_name=name, input=tool_input):
            return [_tool_call(name, tool_input)]
        case ToolOutputAvailableChunk(output=output, preliminary=None | False):
            return _tool_output(_output_text(output).rstrip("\n").splitlines(), _OUTPUT_LINES)
        case ToolOutputErrorChunk(error_text=text):
            return [(f"    ✗ {text}\n", {"fg": "red"})]
        case ErrorChunk(error_text=text):
            return [(f"\nerror: {text}\n", {"fg": "red", "bold": True})]
        case AbortChunk(reason=reason):
            said = f": {line_text(reason)}" if reason else ""
            return [(f"\n[interrupted{said}]\n", {"fg": "yellow"})]
        case DataChunk(type="data-notice", data={"text": str(text)}):
            return [(f"\n[{line_text(text)}]\n", {"fg": "yellow"})]
        case _:
            return []


class TerminalRenderer:
    """Prints text as it streams, with tool calls and their output set apart.

    `live` (default: whether `out` is a terminal) prints at once and erases a failed
    attempt's output when its retry begins; otherwise the model's output of a step is
    held until the step ends, and a retry drops what the failed attempt left."""

    def __init__(self, out: TextIO = sys.stdout, *, live: bool | None = None) -> None:
        self._out = out
        self._live = out.isatty() if live is None else live
        self._column = 0
        # Live: the current message's output, to erase a failed attempt's.
        self._shown: list[_Shown] = []
        # Not live: the model's output of steps not ended yet, by writer.
        self._held: dict[Writer, tuple[int, list[Piece]]] = {}

    def _write(self, text: str, **style: Any) -> None:
        click.echo(click.style(text, **style) if style else text, file=self._out, nl=False)
        self._out.flush()
        last_line = text.rpartition("\n")[2]
        self._column = len(last_line) if "\n" in text else self._column + len(text)

    def render(self, event: StreamEvent) -> None:
        chunk = event.chunk
        writer: Writer = (event.message_id, event.step, event.source)
        if isinstance(chunk, DataChunk) and chunk.type == "data-retry":
            data = chunk.data if isinstance(chunk.data, dict) else {}
            step, source = int(data.get("step", event.step)), str(data.get("source", "model"))
            self._retry((event.message_id, step, source), event.attempt)
            return
        if self._live:
            for text, style in _pieces(chunk):
                self._shown.append(_Shown(writer, event.attempt, self._column, text))
                self._write(text, **style)
        elif event.source == "model" and chunk.type not in TERMINAL_TYPES:
            attempt, pieces = self._held.get(writer, (event.attempt, []))
            if event.attempt > attempt:
                attempt, pieces = event.attempt, []
            self._held[writer] = (attempt, pieces + _pieces(chunk))
            if chunk.type == "finish-step":
                self._release(writer)
        else:
            # Anything else comes after the model's step that led to it: print that first.
            for held in list(self._held):
                self._release(held)
            for text, style in _pieces(chunk):
                self._write(text, **style)
        if chunk.type in TERMINAL_TYPES:
            self._shown.clear()

    def _release(self, writer: Writer) -> None:
        _, pieces = self._held.pop(writer, (0, []))
        for text, style in pieces:
            self._write(text, **style)

    def _retry(self, writer: Writer, attempt: int) -> None:
        """Forget what earlier attempts of `writer` printed (or hold, when not live)."""
        if not self._live:
            held = self._held.get(writer)
            if held is not None and held[0] < attempt:
                del self._held[writer]
            return
        stale = [i for i, s in enumerate(self._shown) if s.writer == writer and s.attempt < attempt]
        if not stale:
            return
        after = self._shown[stale[0] :]
        if any(s.writer != writer or s.attempt >= attempt for s in after):
            # Other output came since: it cannot be erased alone, so say what happened.
            self._write(f"\n[retrying step {writer[1]}: attempt {attempt}]\n", fg="yellow")
            dropped = set(stale)
            self._shown = [s for i, s in enumerate(self._shown) if i not in dropped]
            return
        self._erase(after[0].column, "".join(s.text for s in after))
        del self._shown[stale[0] :]

    def _erase(self, column: int, text: str) -> None:
        """Move back to where `text` began (at `column`) and clear to the end of screen."""
        width = max(shutil.get_terminal_size().columns, 1)
        rows, col = 0, column
        for char in text:
            if char == "\n":
                rows, col = rows + 1, 0
            elif col >= width:
                rows, col = rows + 1, 1
            else:
                col += 1
        moves = "\r" + (f"\x1b[{rows}A" if rows else "") + (f"\x1b[{column}C" if column else "")
        self._out.write(moves + "\x1b[J")
        self._out.flush()
        self._column = column


# A stored tool call's output, in `history`: its first lines only.
_HISTORY_OUTPUT_LINES = 6


def _tool_part(part: ToolPart) -> list[Piece]:
    """A stored tool call: the call and its state, then a short output, error or answer."""
    pieces = [_tool_call(part.tool_name, part.input, f"  [{part.state.value}]")]
    match part.state:
        case ToolState.OUTPUT_AVAILABLE:
            lines = _output_text(part.output).rstrip("\n").splitlines()
            pieces += _tool_output(lines, _HISTORY_OUTPUT_LINES)
        case ToolState.OUTPUT_ERROR:
            first, *rest = (part.error_text or "failed").splitlines() or ["failed"]
            more = f" (+{len(rest)} lines)" if rest else ""
            pieces.append((f"    ✗ {first}{more}\n", {"fg": "red"}))
        case ToolState.OUTPUT_DENIED:
            reason = part.approval.reason if part.approval else None
            said = f": {line_text(reason)}" if reason else ""
            pieces.append((f"    ✗ denied{said}\n", {"fg": "yellow"}))
        case ToolState.APPROVAL_REQUESTED:
            waiting = f"approval {line_text(part.approval.id)}" if part.approval else "approval"
            pieces.append((f"    ? waiting for {waiting}\n", {"fg": "yellow"}))
    return pieces


def message_pieces(message: Message) -> list[Piece]:
    """A stored message as `sessionflow history` prints it: a `role:` line, then its parts
    in order, text as paragraphs, reasoning dimmed and labelled, each tool call where it
    happened with its state and a short output or error, files as `[file name (type)]`
    and app data as `[data-<name>]`. Step boundaries are not shown. Control characters
    are escaped (`sessionflow.cli.safe_text`)."""
    status = "" if message.status is MessageStatus.COMPLETE else f" ({message.status.value})"
    pieces: list[Piece] = [(f"{message.role.value}{status}:\n", {"bold": True})]
    last = ""
    for part in message.parts:
        block: list[Piece]
        match part:
            case TextPart(text=text) if text.strip():
                kind, block = "text", [(text.strip("\n") + "\n", {})]
            case ReasoningPart(text=text) if text.strip():
                kind, block = (
                    "text",
                    [(f"(thinking) {text.strip()}\n", {"dim": True, "italic": True})],
                )
            case ToolPart():
                kind, block = "tool", _tool_part(part)
            case FilePart(filename=name, media_type=media_type):
                kind, block = (
                    "tool",
                    [
                        (
                            f"  [file {line_text(name or 'unnamed')} ({line_text(media_type)})]\n",
                            {"dim": True},
                        )
                    ],
                )
            case DataPart(type="data-notice", data={"text": str(text)}):
                kind, block = "tool", [(f"  [{line_text(text)}]\n", {"fg": "yellow"})]
            case DataPart(type=name):
                kind, block = "tool", [(f"  [{line_text(name)}]\n", {"dim": True})]
            case _:  # step boundaries, empty text
                continue
        # Paragraphs apart; tool calls, files and data of one run together.
        if last and (kind == "text" or last == "text"):
            pieces.append(("\n", {}))
        pieces += block
        last = kind
    return _safe(pieces)
