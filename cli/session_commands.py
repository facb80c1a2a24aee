"""The session commands: talk to a session, follow it, answer its approvals, stop,
close, delete, export and rewind it, and list sessions.

Every one of them names a session the same way (`sessionflow.cli.targets`): by the id
the user gave it (the tenant is added by the CLI, as the web page of `sessionflow dev`
does), or by its workflow id; `--agent` defaults to the only agent served.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sessionflow.cli.running import fail, run
from sessionflow.config import ConfigError, Settings

if TYPE_CHECKING:  # the client is imported when a command runs, not at start-up
    from sessionflow.cli.targets import Target
    from sessionflow.client.client import SessionClient


_tenant_option = click.option(
    "--tenant",
    default=None,
    help="Whose session: the id becomes <tenant>:<id>, as the gateway names a tenant's "
    "sessions. Default SESSIONFLOW_TENANT, else 'dev' with the local stack (what the web "
    "page of `sessionflow dev` shows); '' for none.",
)
_agent_option = click.option(
    "--agent",
    default=None,
    help="The session's agent; default: the only agent served (or, of several, the one "
    "that has a session of this id).",
)
_session_options = [click.argument("session_id"), _agent_option, _tenant_option]


def tenant_of(option: str | None) -> str | None:
    """The tenant `--tenant` names, else the settings' (SESSIONFLOW_TENANT or the default)."""
    from sessionflow.config import parse_tenant

    try:
        return Settings.from_env().tenant if option is None else parse_tenant(option, "--tenant")
    except ConfigError as err:
        fail(err)


def _with_session_options(fn: Any) -> Any:
    for option in reversed(_session_options):
        fn = option(fn)
    return fn


Body = Callable[["SessionClient", "Target"], Awaitable[None]]


def _on_session(
    name: str, session_id: str, agent: str | None, tenant: str | None
) -> Callable[[Body], None]:
    """Decorate a command's body, `async def body(client, target)`, to run it on the
    session the arguments name; a `SessionNotFound` says where it looked."""
    owner = tenant_of(tenant)

    def runner(body: Body) -> None:
        from sessionflow.cli.targets import not_found, resolve
        from sessionflow.client.client import SessionClient
        from sessionflow.errors import SessionNotFound

        async def go() -> None:
            settings = Settings.from_env()
            async with await SessionClient.connect(settings=settings) as client:
                target = await resolve(
                    client,
                    settings,
                    session_id,
                    agent=agent,
                    tenant=owner,
                    tenant_given=tenant is not None,
                )
                try:
                    await body(client, target)
                except SessionNotFound:
                    raise await not_found(client, target, name) from None

        run(go())

    return runner


# -- talking -------------------------------------------------------------------------


@click.command()
@_with_session_options
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="From this turn on, stop a turn after this many model steps (the session keeps it).",
)
@click.option(
    "--budget-input-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Stop this turn once its prompt tokens (cache reads and writes included) reach this.",
)
@click.option(
    "--budget-output-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Stop this turn once its output tokens reach this.",
)
@click.option(
    "--budget-cost",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop this turn once its cost reaches this many US dollars.",
)
@click.option(
    "--if-busy",
    type=click.Choice(["enqueue", "reject", "interrupt", "rollback"]),
    default="enqueue",
    show_default=True,
    help="If a turn runs: queue behind it, fail at once (exit 1, nothing queued), "
    "interrupt it, or roll it back (stopped and taken out of history) first.",
)
@click.argument("text")
def send(
    session_id: str,
    agent: str | None,
    tenant: str | None,
    max_steps: int | None,
    budget_input_tokens: int | None,
    budget_output_tokens: int | None,
    budget_cost: float | None,
    if_busy: str,
    text: str,
) -> None:
    """Send TEXT to a session and stream the answer; exit 1 if the turn failed.

    The --budget-* options limit this turn's model use (they only tighten the agent's
    turn budget); a turn that reaches one ends as budget_exceeded, with a note.

    When the answer asks for an approval it says how to answer it (`sessionflow
    approve` or `deny`, from another shell) and waits; the answer goes on here."""
    from sessionflow.chunks import ToolApprovalRequestChunk, ToolInputAvailableChunk
    from sessionflow.cli.terminal import TerminalRenderer

    @_on_session("send", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        from sessionflow.chunks import is_approval_status

        session = client.agent(target.agent).session(target.session_id)
        if max_steps is not None:
            await session.update(max_steps_per_turn=max_steps)
        limits = {
            "input_tokens": budget_input_tokens,
            "output_tokens": budget_output_tokens,
            "cost": budget_cost,
        }
        budget = {k: v for k, v in limits.items() if v is not None} or None
        result = await session.send(text, budget=budget, if_busy=if_busy)
        renderer = TerminalRenderer()
        calls: dict[str, ToolInputAvailableChunk] = {}
        asked: list[ToolApprovalRequestChunk] = []
        async for event in result.stream():
            renderer.render(event)
            chunk = event.chunk
            if isinstance(chunk, ToolInputAvailableChunk):
                calls[chunk.tool_call_id] = chunk
            elif isinstance(chunk, ToolApprovalRequestChunk):
                asked.append(chunk)
            elif is_approval_status(chunk):
                _say_waiting(target, asked, calls)
                asked = []
        # The stream ends with the step's last chunk, a moment before the workflow
        # records the step: return once it has, so `history` right after shows it.
        (await result.outcome).raise_for_failure()


def _say_waiting(target: Target, asked: list[Any], calls: dict[str, Any]) -> None:
    """The `waiting for approval` lines: which call, and the command that answers it."""
    from sessionflow.cli.safe_text import line_text
    from sessionflow.cli.terminal import tool_summary

    for request in asked:
        call = calls.get(request.tool_call_id)
        what = f"{call.tool_name}: {tool_summary(call.input)}" if call else "a tool call"
        # With one approval pending, `approve <session>` picks it; with several, by id.
        extra = (request.approval_id,) if len(asked) > 1 else ()
        click.echo(
            click.style(
                f"waiting for approval of {line_text(what)}: run "
                f"`{line_text(target.command('approve', *extra))}` or "
                f"`{line_text(target.command('deny', *extra))}`",
                fg="magenta",
            ),
            err=True,
        )


@click.command()
@_with_session_options
def chat(session_id: str, agent: str | None, tenant: str | None) -> None:
    """Chat with a session: type messages, watch answers stream, answer approvals.

    Ctrl-C interrupts the running answer; Ctrl-C again, or Ctrl-D, quits.
    """
    from sessionflow.cli.chat import Chat

    @_on_session("chat", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        await Chat(client.agent(target.agent).session(target.session_id)).run()


@click.command()
@_with_session_options
@click.option("--after", default=None, help="Resume after this event id.")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
def tail(
    session_id: str, agent: str | None, tenant: str | None, after: str | None, as_json: bool
) -> None:
    """Follow a session's stream (every answer, as it comes), surviving Redis
    disconnects, until Ctrl-C, or until its run is ended from outside (a Terminate
    in the Temporal UI: an `error` line says so). SESSION_ID may also be the
    session's workflow id."""
    from sessionflow.cli.chat import tail as follow
    from sessionflow.cli.terminal import TerminalRenderer

    @_on_session("tail", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        renderer = TerminalRenderer()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        events = follow(client.reader, target.workflow_id, after)
        reading = asyncio.ensure_future(_print(events, renderer, as_json))
        await asyncio.wait(
            {reading, asyncio.ensure_future(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        reading.cancel()


async def _print(events: Any, renderer: Any, as_json: bool) -> None:
    from sessionflow.cli.safe_text import json_text

    async for event in events:
        if as_json:
            line = {"id": event.id, "message_id": event.message_id, "step": event.step,
                    "attempt": event.attempt, "chunk": event.chunk.to_wire()}  # fmt: skip
            click.echo(json_text(json.dumps(line)))
        else:
            renderer.render(event)


# -- approvals -----------------------------------------------------------------------


def _answer_approval(
    name: str,
    session_id: str,
    approval_id: str | None,
    agent: str | None,
    tenant: str | None,
    approved: bool,
    reason: str | None,
) -> None:
    from sessionflow.cli.safe_text import line_text
    from sessionflow.contract import ApprovalResponse
    from sessionflow.errors import ApprovalNotPending

    @_on_session(name, session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        info = await session.info()
        chosen = approval_id
        if chosen is None:
            if not info.pending_approvals:
                raise ApprovalNotPending(f"session {target.shown!r} has no approval pending")
            if len(info.pending_approvals) > 1:
                listed = ", ".join(info.pending_approvals)
                raise ApprovalNotPending(
                    f"session {target.shown!r} has {len(info.pending_approvals)} approvals "
                    f"pending ({listed}): name one, `{target.command(name, '<approval id>')}`"
                )
            chosen = info.pending_approvals[0]
        what = await _approval_call(session, chosen)
        await session.approve(
            ApprovalResponse(approval_id=chosen, approved=approved, reason=reason)
        )
        verb = "Approved" if approved else "Denied"
        click.echo(f"{verb} {line_text(what)} ({line_text(chosen)})")


async def _approval_call(session: Any, approval_id: str) -> str:
    """`Bash: rm -rf build`: the call approval `approval_id` is for."""
    from sessionflow.cli.terminal import tool_summary

    info = await session.info()
    for message in reversed(await session.history(offset=max(info.message_count - 2, 0))):
        for part in message.tool_parts():
            if part.approval is not None and part.approval.id == approval_id:
                return f"{part.tool_name}: {tool_summary(part.input)}"
    return "the call"


@click.command()
@click.argument("session_id")
@click.argument("approval_id", required=False)
@_agent_option
@_tenant_option
def approve(
    session_id: str, approval_id: str | None, agent: str | None, tenant: str | None
) -> None:
    """Approve a tool call the session waits for: APPROVAL_ID, or the only one pending.
    The answer goes on (where `send` or `chat` waits, or `sessionflow tail` shows it)."""
    _answer_approval("approve", session_id, approval_id, agent, tenant, True, None)


@click.command()
@click.argument("session_id")
@click.argument("approval_id", required=False)
@click.option("--reason", default=None, help="Why: the model reads it.")
@_agent_option
@_tenant_option
def deny(
    session_id: str,
    approval_id: str | None,
    reason: str | None,
    agent: str | None,
    tenant: str | None,
) -> None:
    """Deny a tool call the session waits for: APPROVAL_ID, or the only one pending.
    The call does not run; the model is told (with --reason, why) and goes on."""
    _answer_approval("deny", session_id, approval_id, agent, tenant, False, reason)


# -- stopping, ending ------------------------------------------------------------------


@click.command()
@_with_session_options
def interrupt(session_id: str, agent: str | None, tenant: str | None) -> None:
    """Stop the session's running answer; what it said so far is kept, marked
    interrupted, and the session takes the next message."""
    from sessionflow.cli.safe_text import line_text

    @_on_session("interrupt", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        info = await session.info()
        # Sent either way (an idle session ignores it): an ended one says so.
        await session.interrupt()
        if not info.busy:
            idle = f"Session {line_text(target.shown)} is {info.status.value}"
            click.echo(f"{idle}: no answer to stop")
            return
        click.echo(f"Interrupted the answer of session {line_text(target.shown)}")


@click.command()
@_with_session_options
def close(session_id: str, agent: str | None, tenant: str | None) -> None:
    """End the session: its sandbox is killed and its workflow completes; its history
    can still be read while Temporal keeps it. A later `send` starts a new, empty
    session under the same id."""
    from sessionflow.cli.safe_text import line_text

    @_on_session("close", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        await client.agent(target.agent).session(target.session_id).close()
        click.echo(f"Closed session {line_text(target.shown)}")


@click.command()
@_with_session_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(session_id: str, agent: str | None, tenant: str | None, yes: bool) -> None:
    """Erase a session everywhere: stop it, kill its sandbox, delete its stream, its
    stored payloads and its Temporal history. It cannot be undone."""
    from sessionflow.cli.safe_text import line_text

    @_on_session("delete", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        if not await session.exists():
            from sessionflow.errors import SessionNotFound

            raise SessionNotFound(target.session_id)
        if not yes:
            click.confirm(f"Delete session {line_text(target.shown)} for good?", abort=True)
        await session.delete()
        click.echo(f"Deleted session {line_text(target.shown)}")


# -- reading, rewinding ---------------------------------------------------------------------


@click.command()
@_with_session_options
@click.option("--json", "as_json", is_flag=True, help="Print messages as JSON lines.")
@click.option("--ids", is_flag=True, help="Show each message's id (what `rewind` takes).")
def history(
    session_id: str, agent: str | None, tenant: str | None, as_json: bool, ids: bool
) -> None:
    """Print a session's messages: each one's text, reasoning, tool calls (with their
    state and a short output) and files, in the order they happened."""
    from sessionflow.cli.safe_text import json_text, line_text
    from sessionflow.cli.terminal import message_pieces

    @_on_session("history", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        for i, message in enumerate(await session.history()):
            if as_json:
                click.echo(json_text(message.model_dump_json()))
                continue
            if i:
                click.echo()
            if ids:
                click.echo(click.style(f"[{line_text(message.id)}]", dim=True))
            for text, style in message_pieces(message):
                click.echo(click.style(text, **style) if style else text, nl=False)


@click.command()
@_with_session_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to this file instead of standard output.",
)
def export(session_id: str, agent: str | None, tenant: str | None, output: Path | None) -> None:
    """Print a session's history as JSON: its messages as the AI SDK's UIMessages, as
    the gateway serves them (`useChat({messages})` takes them as they are), with the
    session's id, agent and tenant."""
    from sessionflow.cli.safe_text import json_text
    from sessionflow.ui_messages import to_ui_messages

    @_on_session("export", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        messages = to_ui_messages(await session.history())
        exported = {
            "sessionId": target.shown,
            "agent": target.agent,
            "tenant": target.tenant,
            "workflowId": target.workflow_id,
            "messages": messages,
        }
        text = json.dumps(exported, indent=2, ensure_ascii=False)
        if output is not None:
            await asyncio.to_thread(output.write_text, text + "\n", encoding="utf-8")
            click.echo(f"Wrote {len(messages)} messages to {output}", err=True)
        else:
            click.echo(json_text(text))


@click.command()
@_with_session_options
@click.argument("message_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def rewind(
    session_id: str, agent: str | None, tenant: str | None, message_id: str, yes: bool
) -> None:
    """Rewind a session so that MESSAGE_ID is its last message: the messages after it
    are dropped (`sessionflow history --ids` shows the ids). Only while it is idle."""
    from sessionflow.cli.safe_text import line_text
    from sessionflow.errors import MessageNotFound

    @_on_session("rewind", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        messages = await session.history()
        index = next((i for i, m in enumerate(messages) if m.id == message_id), None)
        if index is None:
            raise MessageNotFound(
                f"session {target.shown!r} has no message {message_id!r}: "
                f"`{target.command('history', '--ids')}` shows their ids"
            )
        dropped = len(messages) - index - 1
        if dropped and not yes:
            click.confirm(
                f"Drop the last {dropped} message(s) of session {line_text(target.shown)}?",
                abort=True,
            )
        await session.update(last_message_id=message_id)
        kept = messages[index]
        click.echo(
            f"Rewound session {line_text(target.shown)}: dropped {dropped} message(s); the "
            f"last is now {line_text(kept.id)} ({kept.role.value})"
        )


@click.command()
@_with_session_options
@click.option("--input-tokens", type=click.IntRange(min=1), default=None, help="Prompt tokens.")
@click.option("--output-tokens", type=click.IntRange(min=1), default=None, help="Output tokens.")
@click.option(
    "--cost", type=click.FloatRange(min=0, min_open=True), default=None, help="US dollars."
)
def budget(
    session_id: str,
    agent: str | None,
    tenant: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cost: float | None,
) -> None:
    """Give a session a budget of its own over its agent's session budget, limit by
    limit: raise a spent one to let the session go on, or lower one. Takes effect at
    once (a running turn meets it at its next step); `inspect` shows what it has used."""
    from sessionflow.budgets import Budget
    from sessionflow.cli.safe_text import line_text

    if input_tokens is None and output_tokens is None and cost is None:
        raise click.UsageError("give at least one of --input-tokens, --output-tokens, --cost")
    own = Budget(input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)

    @_on_session("budget", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        await session.update(session_budget=own)
        limits = ", ".join(f"{k} {v:g}" for k, v in own.model_dump(exclude_none=True).items())
        click.echo(f"Session {line_text(target.shown)}'s own budget: {limits}")


@click.command()
@_with_session_options
@click.argument("new_id")
@click.option("--at", "at_message_id", default=None, help="The last message the fork keeps.")
def fork(
    session_id: str, agent: str | None, tenant: str | None, new_id: str, at_message_id: str | None
) -> None:
    """Start session NEW_ID with SESSION_ID's history up to --at (default the newest
    message), its agent and its state as of then; SESSION_ID is left as it was."""
    from sessionflow.ids import tenant_session_id

    @_on_session("fork", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        # The fork is the same tenant's: named as the CLI names the session.
        full_new_id = tenant_session_id(target.tenant, new_id)
        forked = await session.fork(full_new_id, at_message_id=at_message_id)
        click.echo(f"forked {target.shown} into {new_id} ({forked.workflow_id})")


def _cost(cost: float | None) -> str:
    return "cost unknown (no price)" if cost is None else f"${cost:.4f}"


@click.command()
@_with_session_options
def inspect(session_id: str, agent: str | None, tenant: str | None) -> None:
    """Show one session: status, usage, pending approvals and its last messages."""
    from sessionflow.cli.safe_text import line_text as safe

    @_on_session("inspect", session_id, agent, tenant)
    async def _(client: SessionClient, target: Target) -> None:
        session = client.agent(target.agent).session(target.session_id)
        info = await session.info()
        usage = await session.usage()
        settings = Settings.from_env()
        whose = f"tenant {target.tenant}, " if target.tenant else ""
        # Ids, names and text below may be anyone's: each is printed on one line,
        # its control characters escaped (sessionflow.cli.safe_text).
        click.echo(f"Session     {safe(target.shown)} ({whose}agent {safe(session.agent)})")
        click.echo(f"Workflow    {safe(session.workflow_id)}  (run {info.run_count})")
        click.echo(f"Temporal UI {settings.workflow_url(session.workflow_id)}")
        if info.ended is not None:
            click.echo(f"Status      {info.status.value} ({safe(info.ended)})")
        else:
            click.echo(f"Status      {info.status.value}; {info.queued} queued")
        click.echo(f"Sandbox     {safe(info.sandbox_id or '-')}")
        pending = safe(", ".join(info.pending_approvals) or "none")
        click.echo(f"Approvals   {pending}")
        total = usage.total
        click.echo(
            f"Usage       {total.input_tokens} in, {total.output_tokens} out, "
            f"{total.cache_read_tokens} cache read, {total.cache_write_tokens} cache write, "
            f"{_cost(total.known_cost())}"
        )
        for model, used in usage.by_model.items():
            click.echo(
                f"            {safe(model)}: {used.input_tokens} in, {used.output_tokens} out, "
                f"{_cost(used.known_cost())}"
            )
        click.echo(f"Messages    {info.message_count}; the last ones:")
        offset = max(info.message_count - 6, 0)
        for message in await session.history(offset=offset):
            text = " ".join(message.text().split())
            text = safe(text if len(text) <= 100 else text[:99] + "…")
            tools = ", ".join(
                f"{safe(p.tool_name)} ({p.state.value})" for p in message.tool_parts()
            )
            extra = f" [{tools}]" if tools else ""
            click.echo(f"  {message.role.value:>9} {message.status.value:<11} {text}{extra}")


@click.command()
@click.option("--status", default=None, help="Only sessions with this status, e.g. needs-approval.")
@click.option("--agent", "agent_name", default=None, help="Only this agent's sessions.")
@click.option("--limit", type=int, default=50, show_default=True)
@_tenant_option
def sessions(status: str | None, agent_name: str | None, limit: int, tenant: str | None) -> None:
    """List sessions, newest first, with their status (a Temporal visibility query).

    With a tenant, only its sessions, by the ids it gives them (as the web page lists
    them, and as the other commands take them); with --tenant '', every session by its
    full id."""
    from sessionflow.cli.safe_text import line_text
    from sessionflow.client.listing import list_sessions

    owner = tenant_of(tenant)
    prefix = f"{owner}:" if owner else None

    async def go() -> None:
        settings = Settings.from_env()
        from sessionflow.connections import connect_temporal
        from sessionflow.storage import external_storage_from_settings

        temporal = await connect_temporal(
            settings.temporal_address,
            settings.temporal_namespace,
            settings=settings,
            external_storage=external_storage_from_settings(settings),
        )
        rows = await list_sessions(
            temporal, status=status, agent=agent_name, prefix=prefix, limit=limit
        )
        if owner:
            click.echo(f"Tenant {owner}")
        click.echo(f"{'SESSION':<32} {'AGENT':<12} {'STATUS':<15} {'TOKENS':>8}  LAST ACTIVITY")
        for row in rows:
            shown = line_text(row.session_id.removeprefix(prefix or ""))
            click.echo(
                f"{shown:<32} {line_text(row.agent):<12} {row.status:<15} {row.tokens:>8}  "
                f"{row.last_activity or '-'}"
            )
        if not rows:
            click.echo("(no sessions)")

    run(go())


SESSION_COMMANDS = [
    send,
    chat,
    tail,
    approve,
    deny,
    interrupt,
    close,
    delete,
    history,
    export,
    rewind,
    fork,
    budget,
    inspect,
    sessions,
]
