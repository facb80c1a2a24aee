"""MCP servers an agent takes tools from: `agent(..., mcp_servers=[...])`.

A server is described here and used elsewhere: `agents.mcp_tools` lists its tools for
each model step and wraps each one as an ordinary `Tool` (so a call is a `run_tool`
activity like any other: durable, retried, approval-gated), and
`agents.mcp_connections` keeps one client session per server open per worker.

The server runs beside the worker, not in the session's sandbox: it is the agent
author's code, trusted as a tool's `execute` is; only the arguments come from the model.
Its tools are offered as `<prefix><tool>`, the prefix being `<name>__` unless set, so
two servers, or a server and a local tool, can never claim one name.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from sessionflow.contract import ActivitySettings

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, eq=False)
class MCPServer:
    """What every MCP server description shares. Instances compare by identity: each
    one is its own server, with its own connection and tool cache in a worker.

    Attributes:
        name: names the server in errors and logs, and (with `__`) prefixes its tools.
        prefix: put before each tool's name to make the name the model sees;
            `"<name>__"` by default. Not empty: it is how a call finds its server.
        needs_approval: True to have a person approve every call of this server's
            tools, or the names (as the server calls them) of the tools that need it.
            An agent's own `needs_approval={"<prefix><tool>": ...}` overrides this.
        activity: timeouts and retries of calls to this server's tools, over the
            agent's `tool_activity` (e.g. `max_attempts=1` for tools that must not
            repeat after a lost connection).
        connect_timeout: seconds to connect (start the process, or reach the URL) and
            to list the tools; past it the step is retried.
        call_timeout: seconds one tool call may take; None leaves it to the tool
            activity's `start_to_close`.
        tools_cache_seconds: how long a worker reuses a listing of the server's tools
            before listing them again.
    """

    name: str
    _: KW_ONLY
    prefix: str | None = None
    needs_approval: bool | Collection[str] = False
    activity: ActivitySettings | None = None
    connect_timeout: float = 30.0
    call_timeout: float | None = None
    tools_cache_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"invalid MCP server name {self.name!r}: use letters, digits, '_' and '-'"
            )
        if self.prefix is not None and not _NAME.match(self.prefix):
            raise ValueError(
                f"MCP server {self.name!r}: prefix {self.prefix!r} must be letters, digits, "
                "'_' and '-', and not empty"
            )
        if self.connect_timeout <= 0 or (self.call_timeout is not None and self.call_timeout <= 0):
            raise ValueError(f"MCP server {self.name!r}: timeouts must be positive")
        if self.tools_cache_seconds < 0:
            raise ValueError(f"MCP server {self.name!r}: tools_cache_seconds must be >= 0")
        if isinstance(self.needs_approval, str):
            # A lone string would be read as a collection of its letters.
            raise TypeError(
                f"MCP server {self.name!r}: needs_approval takes a bool or a list of tool names"
            )

    @property
    def tool_prefix(self) -> str:
        return self.prefix if self.prefix is not None else f"{self.name}__"

    def exposed_name(self, tool_name: str) -> str:
        """The name the model sees for the server's tool `tool_name`: the prefix, then
        the name with characters model APIs refuse (anything but letters, digits, '_'
        and '-') replaced by '_'."""
        return self.tool_prefix + _UNSAFE.sub("_", tool_name)

    def owns(self, exposed_name: str) -> bool:
        """Whether `exposed_name` is in this server's part of the tool namespace."""
        return exposed_name.startswith(self.tool_prefix) and exposed_name != self.tool_prefix

    def gates(self, exposed_name: str) -> bool:
        """Whether this server's own rule asks for approval of `exposed_name`'s calls."""
        if isinstance(self.needs_approval, bool):
            return self.needs_approval
        return exposed_name in {self.exposed_name(n) for n in self.needs_approval}


@dataclass(frozen=True, eq=False)
class MCPServerStdio(MCPServer):
    """An MCP server the worker starts as a subprocess and talks to over stdin/stdout.

    The process inherits only a safe part of the worker's environment (`PATH`, `HOME`,
    `USER`, `SHELL`, `TERM`, `LOGNAME`) plus `env`, so the worker's secrets do not
    reach it unless given. One process per worker serves all of the worker's calls.

    Example:
        `MCPServerStdio("files", command="npx", args=["-y", "<package>", "/data"])`
    """

    _: KW_ONLY
    command: str
    args: Sequence[str] = ()
    # Kept out of repr (and so out of logs): environments carry credentials.
    env: Mapping[str, str] | None = field(default=None, repr=False)
    cwd: str | Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.command:
            raise ValueError(f"MCP server {self.name!r}: command must not be empty")
        if isinstance(self.args, str):
            raise TypeError(f"MCP server {self.name!r}: args must be a list of strings")


@dataclass(frozen=True, eq=False)
class MCPServerHTTP(MCPServer):
    """An MCP server reached over streamable HTTP at `url`, e.g.
    `https://mcp.example.com/mcp`, with `headers` on every request (an
    `Authorization` header, say: it is never logged)."""

    _: KW_ONLY
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server {self.name!r}: url must start with http:// or https://")


def check_servers(agent_name: str, servers: Sequence[MCPServer], tool_names: Sequence[str]) -> None:
    """Refuse servers that could claim the same tool name as another server or a local
    tool. Names are resolved by prefix alone (a call may land on a worker that has not
    listed the server yet), so overlapping prefixes are refused up front."""
    for server in servers:
        if not isinstance(server, MCPServer):
            raise TypeError(
                f"agent {agent_name!r}: mcp_servers takes MCPServerStdio or MCPServerHTTP, "
                f"not {type(server).__name__}"
            )
    names = [s.name for s in servers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"agent {agent_name!r}: MCP server names used twice: {twice}")
    for server in servers:
        for other in servers:
            if other is not server and other.tool_prefix.startswith(server.tool_prefix):
                raise ValueError(
                    f"agent {agent_name!r}: MCP servers {server.name!r} and {other.name!r} "
                    f"have overlapping tool prefixes {server.tool_prefix!r} and "
                    f"{other.tool_prefix!r}"
                )
        clashes = sorted(n for n in tool_names if n.startswith(server.tool_prefix))
        if clashes:
            raise ValueError(
                f"agent {agent_name!r}: tools {clashes} clash with MCP server "
                f"{server.name!r}, whose tools are named {server.tool_prefix!r}<tool>: rename "
                "them or give the server another prefix"
            )
