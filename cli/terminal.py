"""Rendering a session's stream in a terminal, for the CLI and the demo."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import click

from sessionflow.chunks import (
    AbortChunk,
    ErrorChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    TextDeltaChunk,
    TextEndChunk,
    ToolInputAvailableChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)
from sessionflow.streams.reader import StreamEvent

_OUTPUT_LINES = 12


def _summary(tool_input: Any) -> str:
    if isinstance(tool_input, dict) and isinstance(tool_input.get("command"), str):
        return str(tool_input["command"])
    return json.dumps(tool_input)


def _output_text(output: Any) -> str:
    if isinstance(output, dict) and "stdout" in output:
        text = str(output.get("stdout", "")) + str(output.get("stderr", ""))
        code = output.get("exit_code")
        return text if code in (0, None) else f"{text}(exit code {code})"
    return json.dumps(output, indent=2)


class TerminalRenderer:
    """Prints text as it streams, with tool calls and their output set apart."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out

    def _write(self, text: str, **style: Any) -> None:
        click.echo(click.style(text, **style) if style else text, file=self._out, nl=False)
        self._out.flush()

    def render(self, event: StreamEvent) -> None:
        chunk = event.chunk
        match chunk:
            case TextDeltaChunk(delta=delta):
                self._write(delta)
            case ReasoningDeltaChunk(delta=delta):
                self._write(delta, dim=True, italic=True)
            case TextEndChunk() | ReasoningEndChunk():
                self._write("\n")
            case ToolInputAvailableChunk(tool_name=name, input=tool_input):
                first, *rest = _summary(tool_input).splitlines() or [""]
                more = f" (+{len(rest)} lines)" if rest else ""
                self._write(f"  ▶ {name}: {first}{more}\n", fg="cyan")
            case ToolOutputAvailableChunk(output=output, preliminary=None | False):
                lines = _output_text(output).rstrip("\n").splitlines()
                shown = lines[:_OUTPUT_LINES]
                if len(lines) > _OUTPUT_LINES:
                    shown.append(f"… {len(lines) - _OUTPUT_LINES} more lines")
                for line in shown:
                    self._write(f"    │ {line}\n", dim=True)
            case ToolOutputErrorChunk(error_text=text):
                self._write(f"    ✗ {text}\n", fg="red")
            case ErrorChunk(error_text=text):
                self._write(f"\nerror: {text}\n", fg="red", bold=True)
            case AbortChunk(reason=reason):
                self._write(f"\n[interrupted{': ' + reason if reason else ''}]\n", fg="yellow")
            case _:
                pass
