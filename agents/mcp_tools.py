"""An MCP server's tools as ordinary `Tool`s, so calls need nothing special.

Each tool the server lists becomes a `Tool` named `<prefix><tool>` whose input model
takes any JSON object and checks it against the tool's own JSON Schema, and whose
`execute` calls the tool through the worker's open session
(`agents.mcp_connections`). The call is therefore a `run_tool` activity like any
other: durable, retried when the server cannot be reached, gated by `needs_approval`.

Listings are cached per worker for the server's `tools_cache_seconds`. A call may
reach a worker that has not listed the server yet (or whose listing lacks the tool):
`MCPToolset.tool(name)` then answers with a `Tool` that lists the server first.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import structlog
from pydantic import BaseModel, ConfigDict, model_validator

from sessionflow.agents.mcp import MCPServer
from sessionflow.agents.mcp_connections import MCPToolError, call_tool, list_tools
from sessionflow.agents.tools import Tool, ToolContext
from sessionflow.errors import MCPServerRefused

if TYPE_CHECKING:
    from mcp.types import CallToolResult
    from mcp.types import Tool as RemoteTool

log = structlog.get_logger(__name__)

# Checks a call's arguments against a tool's JSON Schema: the problem, or None.
SchemaCheck = Callable[[dict[str, Any]], str | None]


class MCPArguments(BaseModel):
    """A call's arguments for an MCP tool: any JSON object, checked against the tool's
    JSON Schema when the tool has been listed. Fields read as attributes
    (`args.path`), as a pydantic input's would, so an agent's `needs_approval`
    functions look alike for every tool; `args.model_extra` is the whole object."""

    model_config = ConfigDict(extra="allow")
    schema_check: ClassVar[SchemaCheck | None] = None

    @model_validator(mode="after")
    def _matches_schema(self) -> Self:
        check = type(self).schema_check
        problem = check(self.arguments()) if check is not None else None
        if problem is not None:
            raise ValueError(problem)
        return self

    def arguments(self) -> dict[str, Any]:
        """The object the model sent, as the server receives it."""
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class _Listed:
    remote_name: str
    tool: Tool[MCPArguments]
    check: SchemaCheck | None


class MCPToolset:
    """One server's tools, for every agent that uses the server in this worker."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        # The latest listing by exposed name; kept past its freshness for lookups
        # that cannot wait (`tool(name)` is synchronous), refreshed by `tools()`.
        self._listed: dict[str, _Listed] = {}
        self._listed_at: float | None = None

    def _fresh(self) -> bool:
        return (
            self._listed_at is not None
            and time.monotonic() - self._listed_at < self.server.tools_cache_seconds
        )

    async def tools(self) -> list[Tool[Any]]:
        """The server's tools, listed again once the cached listing is too old."""
        if not self._fresh():
            await self._relist()
        return [listed.tool for listed in self._listed.values()]

    def tool(self, name: str) -> Tool[Any] | None:
        """The tool named `name` if it is in this server's part of the namespace: as
        last listed, or one that lists the server when it runs."""
        if not self.server.owns(name):
            return None
        listed = self._listed.get(name)
        if listed is not None:
            return listed.tool
        return self._tool(name, "", MCPArguments)

    async def _relist(self) -> None:
        remote = await list_tools(self.server)
        listed: dict[str, _Listed] = {}
        for spec in remote:
            name = self.server.exposed_name(spec.name)
            if name in listed:
                raise MCPServerRefused(
                    f"MCP server {self.server.name!r} lists tools {listed[name].remote_name!r} "
                    f"and {spec.name!r}, which are both offered as {name!r}"
                )
            listed[name] = self._wrap(name, spec)
        self._listed, self._listed_at = listed, time.monotonic()
        log.debug("MCP tools listed", mcp_server=self.server.name, tools=len(listed))

    def _wrap(self, name: str, spec: RemoteTool) -> _Listed:
        old = self._listed.get(name)
        if old is not None and old.tool.input_json_schema == spec.input_schema:
            # Unchanged: keep the input model rather than build it again.
            arguments: type[MCPArguments] = old.tool.input_schema
            check = old.check
        else:
            check = _schema_check(spec.input_schema)
            arguments = type(
                f"{name}_arguments",
                (MCPArguments,),
                {"schema_check": staticmethod(check) if check else None, "__module__": __name__},
            )
        description = spec.description or spec.title or ""
        tool = self._tool(name, description, arguments, spec.input_schema)
        return _Listed(remote_name=spec.name, tool=tool, check=check)

    def _tool(
        self,
        name: str,
        description: str,
        arguments: type[MCPArguments],
        json_schema: dict[str, Any] | None = None,
    ) -> Tool[MCPArguments]:
        async def execute(args: MCPArguments, ctx: ToolContext) -> Any:
            return await self._call(name, args, ctx)

        return Tool(
            name=name,
            description=description,
            input_schema=arguments,
            execute=execute,
            needs_approval=self.server.gates(name),
            activity=self.server.activity,
            input_json_schema=json_schema,
        )

    async def _call(self, name: str, args: MCPArguments, ctx: ToolContext) -> Any:
        listed = self._listed.get(name)
        if listed is None:
            await self._relist()
            listed = self._listed.get(name)
        if listed is None:
            offered = ", ".join(sorted(self._listed)) or "none"
            raise MCPToolError(
                f"MCP server {self.server.name!r} has no tool offered as {name!r} "
                f"(its tools: {offered})"
            )
        arguments = args.arguments()
        problem = listed.check(arguments) if listed.check is not None else None
        if problem is not None:
            raise MCPToolError(f"invalid input for {name}: {problem}")

        async def report(progress: float, total: float | None, message: str | None) -> None:
            ctx.stream_output({"progress": progress, "total": total, "message": message})

        result = await call_tool(self.server, listed.remote_name, arguments, report)
        if result.is_error:
            raise MCPToolError(_text(result) or f"{name} reported an error")
        return _output(result)


_toolsets: weakref.WeakKeyDictionary[MCPServer, MCPToolset] = weakref.WeakKeyDictionary()


def toolset(server: MCPServer) -> MCPToolset:
    """The worker's toolset of `server`, shared by every agent that names the server."""
    found = _toolsets.get(server)
    if found is None:
        found = _toolsets[server] = MCPToolset(server)
    return found


def _schema_check(schema: dict[str, Any]) -> SchemaCheck | None:
    """A checker for `schema`, or None when the server's schema is itself invalid (the
    server then judges the arguments alone)."""
    import jsonschema

    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError:
        return None
    validator = validator_class(schema)

    def check(arguments: dict[str, Any]) -> str | None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{where}: {error.message}" if where else error.message

    return check


def _text(result: CallToolResult) -> str:
    from mcp.types import TextContent

    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def _output(result: CallToolResult) -> Any:
    """What the model is given: the structured result when the tool has one, else its
    text, else its content blocks with binary data left out (a model reads tool
    output as JSON text, where base64 is only noise)."""
    from mcp.types import TextContent

    if result.structured_content is not None:
        return result.structured_content
    if all(isinstance(b, TextContent) for b in result.content):
        return _text(result)
    blocks: list[dict[str, Any]] = []
    for block in result.content:
        data = block.model_dump(mode="json", by_alias=True, exclude_none=True)
        for holder in (data, data.get("resource")):
            if isinstance(holder, dict):
                for key in ("data", "blob"):
                    if isinstance(holder.get(key), str):
                        holder[key] = f"<{len(holder[key]) * 3 // 4} bytes left out>"
        blocks.append(data)
    return blocks
