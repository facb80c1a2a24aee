"""Built-in tools, named as in the reference agent SDK: Read, Write, Edit, Grep, List, Bash."""

from sessionflow.agents.builtin.bash import BashInput, bash_tool
from sessionflow.agents.builtin.files import edit_tool, list_tool, read_tool, write_tool
from sessionflow.agents.builtin.grep import grep_tool
from sessionflow.agents.tools import Tool


def builtin_tools() -> list[Tool]:  # type: ignore[type-arg]
    """All six, ready for `agent(..., tools=builtin_tools())`."""
    return [read_tool(), write_tool(), edit_tool(), grep_tool(), list_tool(), bash_tool()]


__all__ = [
    "BashInput",
    "bash_tool",
    "builtin_tools",
    "edit_tool",
    "grep_tool",
    "list_tool",
    "read_tool",
    "write_tool",
]
