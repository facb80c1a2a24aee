"""An MCP server for the tests, built with the SDK's own `MCPServer` (FastMCP) and
served over stdio: the stdio client runs it as `python tests/mcp_stdio_server.py`.

Calls that must be seen to run (or not) append a line to the file named by the
environment variable `CALC_LOG`, which also shows that a server's `env` reaches it.
`--clashing-names` adds two tools whose names collide once made safe for models.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

app: MCPServer = MCPServer("calc", log_level="WARNING")


def _log(line: str) -> None:
    with open(os.environ["CALC_LOG"], "a") as log:
        log.write(line + "\n")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _log(f"add {a} {b}")
    return a + b


@app.tool()
def fail(reason: str) -> str:
    """Always fails, saying why."""
    raise ToolError(f"refused: {reason}")


@app.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@app.tool(name="delete.note")
def delete_note(title: str) -> str:
    """Delete a note for good."""
    _log(f"deleted {title}")
    return f"deleted {title}"


@app.tool()
async def count(to: int, ctx: Context) -> str:
    """Count slowly, reporting progress."""
    for n in range(1, to + 1):
        await ctx.report_progress(n, to, f"at {n}")
        await asyncio.sleep(0.05)
    return f"counted to {to}"


if "--clashing-names" in sys.argv:

    @app.tool(name="a.b")
    def a_dot_b() -> str:
        """One of two names that clash."""
        return "a.b"

    @app.tool(name="a_b")
    def a_underscore_b() -> str:
        """The other."""
        return "a_b"


if __name__ == "__main__":
    app.run()
