"""`agent(...)`: a model, a system prompt and tools, under a name workers serve."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from sessionflow.agents.context import AgentContext, Resolvable, resolve
from sessionflow.agents.mcp import MCPServer, check_servers
from sessionflow.agents.mcp_tools import toolset
from sessionflow.agents.tools import NeedsApproval, Tool
from sessionflow.budgets import Budget
from sessionflow.compaction import Compaction
from sessionflow.contract import ActivitySettings
from sessionflow.errors import InvalidInput
from sessionflow.ids import validate_agent_name
from sessionflow.prices import Price, PriceMap, prices_from
from sessionflow.providers.scripted import Script
from sessionflow.validation import describe
from sessionflow.webhooks import check_webhook_url

ModelOption = str | Script
# `agent(idle_ttl=...)` left out: the deployment's default (SESSIONFLOW_IDLE_TTL).
IdleTTL = float | None | Literal["default"]

# How `Agent.session` makes a session handle. The agents layer sits below the client
# and may not import it, so the client layer installs this when it is imported
# (`sessionflow.client.defaults`).
SessionOpener = Callable[["Agent", str], Any]
_session_opener: SessionOpener | None = None


def install_session_opener(opener: SessionOpener | None) -> None:
    """Set what `Agent.session(id)` calls (the client layer does this on import)."""
    global _session_opener
    _session_opener = opener


@dataclass(frozen=True)
class Agent:
    name: str
    model: Resolvable[ModelOption]
    system: Resolvable[str | None] = None
    tools: tuple[Tool[Any], ...] = ()
    context_schema: type[BaseModel] | None = None
    state_schema: type[BaseModel] | None = None
    needs_approval: Mapping[str, NeedsApproval] = field(default_factory=dict)
    active_tools: Resolvable[Sequence[str] | None] = None
    model_activity: ActivitySettings | None = None
    tool_activity: ActivitySettings | None = None
    mcp_servers: tuple[MCPServer, ...] = ()
    # Seconds without a message after which a session closes itself (None: never;
    # "default": the client's default, SESSIONFLOW_IDLE_TTL).
    idle_ttl: IdleTTL = "default"
    # Limits on model use for the whole session and for each turn (sessionflow.budgets).
    session_budget: Budget | None = None
    turn_budget: Budget | None = None
    # Prices of models (id -> USD per million tokens) over the deployment's.
    prices: Mapping[str, Price] = field(default_factory=dict)
    # The most tokens one model step may write (None: the provider's setting).
    max_output_tokens: int | None = None
    # How sessions compact (None: never), and the model's window in tokens (None: the
    # window `sessionflow.providers.windows` knows for the model, if any).
    compaction: Compaction | None = field(default_factory=Compaction)
    context_window: int | None = None
    # Where this agent's sessions' events are POSTed (`sessionflow.webhooks`).
    webhook_url: str | None = None
    # Sessions move to the deployment's current build at continue-as-new (None: the
    # client's default, SESSIONFLOW_UPGRADE_ON_NEW_BUILD).
    upgrade_on_new_build: bool | None = None

    def session(self, session_id: str) -> Any:
        """A handle on this agent's session `session_id` (a `sessionflow.client.Session`),
        like the reference's `myAgent.session(chatId)`: synchronous, no network call
        until it is used. It uses the client given to `sessionflow.use_client(...)`,
        else one connected from the environment (`TEMPORAL_ADDRESS`, `REDIS_URL`, ...)
        on first use. The client layer must be imported (`from sessionflow import
        agent` does that; so does `import sessionflow.client`)."""
        if _session_opener is None:
            raise RuntimeError(
                "agent.session(id) needs the client: import sessionflow.client (or use "
                "`from sessionflow import agent`), or call SessionClient.agent(...).session(id)"
            )
        return _session_opener(self, session_id)

    def scripts(self) -> list[Script]:
        """Scripts named directly as the model, for the worker's scripted provider."""
        return [self.model] if isinstance(self.model, Script) else []

    def tool(self, name: str) -> Tool[Any] | None:
        """The tool the model calls `name`: a local one, or one of an MCP server's,
        found by its prefix without waiting for the server (see `agents.mcp_tools`)."""
        local = next((t for t in self.tools if t.name == name), None)
        if local is not None:
            return local
        for server in self.mcp_servers:
            found = toolset(server).tool(name)
            if found is not None:
                return found
        return None

    async def model_for(self, ctx: AgentContext) -> ModelOption:
        """This step's model: a `provider/model` string or a `Script`."""
        model: ModelOption = await resolve(self.model, ctx, option="model")
        return model

    async def tools_for(self, ctx: AgentContext) -> list[Tool[Any]]:
        """This step's tools: the local ones, then each MCP server's as it lists them
        now (or as listed within its `tools_cache_seconds`), less those
        `active_tools` leaves out. A server none of whose tools can be active is not
        asked."""
        active = await resolve(self.active_tools, ctx, option="active_tools")
        wanted = None if active is None else set(active)
        tools = list(self.tools)
        servers = [s for s in self.mcp_servers if wanted is None or any(s.owns(n) for n in wanted)]
        if servers:
            listed = await asyncio.gather(*(toolset(s).tools() for s in servers))
            tools.extend(t for server_tools in listed for t in server_tools)
        if wanted is None:
            return tools
        return [t for t in tools if t.name in wanted]

    async def requires_approval(self, tool: Tool[Any], args: BaseModel) -> bool:
        """The agent's rule for the tool if it has one, else the tool's own."""
        rule = self.needs_approval.get(tool.name, tool.needs_approval)
        if not callable(rule):
            return bool(rule)
        decided = rule(args)
        if inspect.isawaitable(decided):
            decided = await decided
        return bool(decided)

    def activity_for(self, tool: Tool[Any] | None) -> ActivitySettings | None:
        """A tool call's activity settings: the agent's for all tools, then the tool's."""
        own = tool.activity if tool is not None else None
        if self.tool_activity is None:
            return own
        return self.tool_activity.merged(own)


def agent(
    name: str,
    *,
    model: Resolvable[ModelOption],
    system: Resolvable[str | None] = None,
    tools: Sequence[Tool[Any]] = (),
    context_schema: type[BaseModel] | None = None,
    state_schema: type[BaseModel] | None = None,
    needs_approval: Mapping[str, NeedsApproval] | None = None,
    active_tools: Resolvable[Sequence[str] | None] = None,
    model_activity: ActivitySettings | None = None,
    tool_activity: ActivitySettings | None = None,
    mcp_servers: Sequence[MCPServer] = (),
    idle_ttl: timedelta | float | Literal["default"] | None = "default",
    session_budget: Budget | Mapping[str, Any] | None = None,
    turn_budget: Budget | Mapping[str, Any] | None = None,
    prices: PriceMap | None = None,
    max_output_tokens: int | None = None,
    compaction: Compaction | bool = True,
    context_window: int | None = None,
    webhook_url: str | None = None,
    upgrade_on_new_build: bool | None = None,
) -> Agent:
    """Define an agent.

    Args:
        name: how sessions refer to it; part of every session's workflow id.
        model: `"provider/model"`, e.g. `"anthropic/claude-sonnet-4-6"` or
            `"scripted/<name>"`, or a `Script`; or a function of `AgentContext`
            returning one, resolved before every model step.
        system: the system prompt, or a function of `AgentContext` returning it.
        tools: the tools the model may call.
        context_schema: pydantic model that `send(context=...)` is validated against.
            Context is transient: it is never stored where Temporal keeps data.
        state_schema: pydantic model of the session's persisted state; its defaults
            are the initial state. Tools change it through `ctx.state`.
        needs_approval: per tool name, True/False or a function of the tool's input
            saying whether a person must approve the call; overrides the tool's own.
        active_tools: names of the tools offered to the model (all when None), or a
            function of `AgentContext` returning them.
        model_activity: timeouts and retries of this agent's model steps (unset fields
            keep the defaults); they apply from the session's second step on, since the
            workflow learns them from the first.
        tool_activity: timeouts and retries of its tool calls; a tool's own
            `activity=` settings override these field by field.
        mcp_servers: MCP servers (`MCPServerStdio`, `MCPServerHTTP`) whose tools the
            model may call too, named `<server>__<tool>` (or the server's `prefix`).
            They are listed before each model step; a local tool whose name starts
            with a server's prefix is refused here.
        idle_ttl: how long a session may go without a message before it closes itself,
            as `close` does (its sandbox killed; a later send starts a new, empty
            session): a `timedelta` or seconds; None or 0 for never. Left out, the
            deployment's default applies (SESSIONFLOW_IDLE_TTL, 7 days). Set when a
            session starts: changing it later affects new sessions only.
        session_budget: limits on the whole session's model use, a `Budget` (or the
            same as a dict): `input_tokens` (every prompt token, cache reads and
            writes included), `output_tokens` and `cost` (US dollars at the price
            table's prices). Checked before every model step; once one is reached,
            each turn ends with outcome `budget_exceeded` before calling the model.
        turn_budget: the same limits for each turn; `send(..., budget=...)` can
            tighten them for one turn, never loosen them.
        prices: model id -> `Price` (or a dict of `input`, `output`, `cache_write`,
            `cache_read`, US dollars per million tokens), over `SESSIONFLOW_PRICES`
            and the built-in table (`sessionflow.prices`); `usage()` reports costs by
            them. A model with no price has cost None.
        max_output_tokens: the most tokens one model step may write (`max_tokens`, or
            `max_completion_tokens` on OpenAI's API); left out, the provider's
            setting (`SESSIONFLOW_ANTHROPIC_MAX_TOKENS`, `SESSIONFLOW_OPENAI_MAX_TOKENS`).
        compaction: how a session keeps what it sends inside the model's window
            (`Compaction(threshold=0.8, ...)`; True: the defaults; False: never compact,
            and a request over the window fails its turn). History keeps every message
            either way.
        context_window: the model's window in tokens, for models the built-in table
            (`sessionflow.providers.windows`) does not know or to use less of it. With
            no window known, sessions never compact.
        webhook_url: an http(s) URL that gets a signed POST when one of this agent's
            sessions finishes a turn, waits for an approval, or ends (see README,
            Webhooks); a session may have its own (`send(..., webhook_url=...)`,
            `update(webhook_url=...)`).
        upgrade_on_new_build: True: a session pinned to an older build moves to the
            deployment's current build when its next message comes (it continues as
            new there, carrying its state), so long idle sessions run new code; every
            build deployed must then accept the state older builds carry over (see the
            README, "Moving long idle sessions to new code"). False: sessions finish on
            the build they started on. Left out, the deployment's default applies
            (SESSIONFLOW_UPGRADE_ON_NEW_BUILD, off). Set when a session starts.
    """
    validate_agent_name(name)
    if isinstance(model, str) and "/" not in model:
        raise ValueError(f"agent {name!r}: model must look like 'provider/model', got {model!r}")
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"agent {name!r}: duplicate tool names {duplicates}")
    check_servers(name, mcp_servers, names)
    unknown = sorted(
        n for n in set(needs_approval or {}) - set(names) if not any(s.owns(n) for s in mcp_servers)
    )
    if unknown:
        raise ValueError(f"agent {name!r}: needs_approval names unknown tools {unknown}")
    for schema, label in ((context_schema, "context_schema"), (state_schema, "state_schema")):
        if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"agent {name!r}: {label} must be a pydantic model class")
    return Agent(
        name=name,
        model=model,
        system=system,
        tools=tuple(tools),
        context_schema=context_schema,
        state_schema=state_schema,
        needs_approval=dict(needs_approval or {}),
        active_tools=active_tools,
        model_activity=model_activity,
        tool_activity=tool_activity,
        mcp_servers=tuple(mcp_servers),
        idle_ttl=_idle_ttl(name, idle_ttl),
        session_budget=_budget(name, "session_budget", session_budget),
        turn_budget=_budget(name, "turn_budget", turn_budget),
        prices=prices_from(prices, f"agent {name!r}: prices"),
        max_output_tokens=_max_output_tokens(name, max_output_tokens),
        compaction=_compaction(name, compaction),
        context_window=_window(name, context_window),
        webhook_url=None if webhook_url is None else _webhook_url(name, webhook_url),
        upgrade_on_new_build=_switch(name, "upgrade_on_new_build", upgrade_on_new_build),
    )


def _budget(name: str, option: str, value: Budget | Mapping[str, Any] | None) -> Budget | None:
    if value is None or isinstance(value, Budget):
        return value
    try:
        return Budget.model_validate(value)
    except ValidationError as err:
        problems = describe(err, Budget)
        raise ValueError(f"agent {name!r}: {option} is not a valid Budget ({problems})") from None


def _switch(name: str, option: str, value: bool | None) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"agent {name!r}: {option} must be True, False or None, got {value!r}")
    return value


def _max_output_tokens(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"agent {name!r}: max_output_tokens must be a whole number of at least 1")
    return value


def _compaction(name: str, value: Compaction | bool) -> Compaction | None:
    if isinstance(value, Compaction):
        return value
    if isinstance(value, bool):
        return Compaction() if value else None
    raise TypeError(f"agent {name!r}: compaction must be a Compaction, True or False")


def _window(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"agent {name!r}: context_window must be a number of tokens")
    return value


def _webhook_url(name: str, url: str) -> str:
    try:
        return check_webhook_url(url)
    except InvalidInput as err:
        raise ValueError(f"agent {name!r}: {err}") from None


def _idle_ttl(name: str, value: timedelta | float | Literal["default"] | None) -> IdleTTL:
    if value is None or isinstance(value, str):
        if value not in (None, "default"):
            raise ValueError(f"agent {name!r}: idle_ttl must be a timedelta or seconds")
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError(
            f"agent {name!r}: idle_ttl must be a timedelta or seconds (0 or None: never), "
            f"got {value!r}"
        )
    return float(seconds) or None
