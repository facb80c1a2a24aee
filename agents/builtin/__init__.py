"""Built-in tools, named as in the reference agent SDK."""

from agents.builtin.bash import BashInput, bash_tool

__all__ = ["BashInput", "bash_tool"]
