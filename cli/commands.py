"""The `sessionflow` command: the local stack, a worker, the demo, and session tools."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from sessionflow.config import ConfigError, Settings, WorkerRole
from sessionflow.errors import InvalidInput, SessionflowError
from sessionflow.logs import configure_logging

T = TypeVar("T")

DEFAULT_AGENTS = "sessionflow.agents.demo:demo_agent"
DEMO_MESSAGE = "Show me what you can do: look around, write a small program and run it."


def _run(coro: Awaitable[T], explain: Callable[[], str | None] | None = None) -> NoReturn:
    """Run a command's coroutine to completion, then exit the process at once.

    Exit status: 0 when done, 2 for bad input (a setting, an argument), 1 for other
    failures, each told in one line; 130 after Ctrl-C. `explain` says why, if it can,
    when something exits the process from inside (uvicorn does, when it cannot listen).

    The Temporal SDK's native runtime keeps threads that may call into Python while
    the interpreter finalizes, which can abort the process after a successful run;
    once the command's own work is done and flushed, nothing is left to finalize.
    """
    from sessionflow.cli.safe_text import body_text

    code = 0
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except InvalidInput as err:
        click.echo(f"Error: {body_text(str(err))}", err=True)
        code = 2
    except SessionflowError as err:
        # A turn's failure may quote what a model or tool wrote.
        click.echo(f"Error: {body_text(str(err))}", err=True)
        code = 1
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exit:
        reason = explain() if explain else None
        if reason:
            click.echo(f"Error: {reason}", err=True)
        code = exit.code if isinstance(exit.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _load(specs: Sequence[str]) -> list[Any]:
    from sessionflow.cli.loading import load_agents

    try:
        return load_agents(specs, DEFAULT_AGENTS)
    except ConfigError as err:
        _fail(err)


def _fail(err: Exception, code: int = 2) -> NoReturn:
    """Say what is wrong in one line and exit (2: bad input)."""
    click.echo(f"Error: {err}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group()
@click.version_option(package_name="sessionflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Durable LLM agent sessions on Temporal, streamed through Redis."""
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        if "--help" in sys.argv[1:]:  # help needs no settings
            return
        _fail(err)
    # Interactive commands keep the terminal for the session's output.
    services = ctx.invoked_subcommand in ("dev", "worker", "gateway")
    explicit = "log_level" in settings.model_fields_set
    level = settings.log_level if services or explicit else "warning"
    configure_logging(level, settings.log_format)


_agents_option = click.option(
    "--agents",
    "agent_specs",
    multiple=True,
    metavar="MODULE:ATTR",
    help=f"Agents to serve (repeatable), imported from the current directory first; "
    f"default {DEFAULT_AGENTS}.",
)


@main.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help="Default .sessionflow"
)
@click.option("--temporal-port", type=int, default=7233, show_default=True)
@click.option("--ui-port", type=int, default=8233, show_default=True)
@click.option("--redis-port", type=int, default=6379, show_default=True)
@click.option("--gateway-port", type=int, default=8000, show_default=True)
@_agents_option
def dev(
    data_dir: Path | None,
    temporal_port: int,
    ui_port: int,
    redis_port: int,
    gateway_port: int,
    agent_specs: tuple[str, ...],
) -> None:
    """Run Temporal, Redis, a worker and the gateway on loopback until Ctrl-C.

    Data persists under the data directory, so running it again resumes sessions.
    The gateway accepts SESSIONFLOW_API_KEYS, or the printed development key.
    It says it is ready only once every service answers, and stops, with the failing
    service's error, when one fails.
    """
    from sessionflow.cli.dev import (
        DEV_API_KEY,
        DevOptions,
        api_keys,
        exit_reason,
        gateway_config,
        run_dev,
    )
    from sessionflow.cli.localstack import StackConfig
    from sessionflow.logs import remember_secret

    settings = Settings.from_env()
    agents = _load(agent_specs)
    own_keys = not settings.api_keys
    try:
        config = replace(
            gateway_config(settings, agents),
            port=gateway_port,
            api_keys=settings.api_keys or api_keys(DEV_API_KEY),
        )
    except ConfigError as err:
        _fail(err)
    if not own_keys:
        remember_secret(*config.api_keys)
    stack = StackConfig(
        data_dir=data_dir or settings.data_dir,
        temporal_port=temporal_port,
        ui_port=ui_port,
        redis_port=redis_port,
    )
    options = DevOptions(
        stack=stack, settings=settings, agents=agents, gateway=config, own_keys=own_keys
    )
    _run(run_dev(options), explain=exit_reason)


@main.command()
@_agents_option
def gateway(agent_specs: tuple[str, ...]) -> None:
    """Serve the HTTP gateway (REST, SSE, AI SDK chat transport) until SIGINT or SIGTERM.

    Needs SESSIONFLOW_API_KEYS ("key:tenant,..."); listens on SESSIONFLOW_GATEWAY_HOST
    and SESSIONFLOW_GATEWAY_PORT. Serves the agents of --agents (as the workers do):
    any other agent is refused (404).
    """
    from sessionflow.cli.dev import (
        check_port_free,
        exit_reason,
        gateway_config,
        hear_uvicorn,
        serve_gateway,
    )
    from sessionflow.logs import remember_secret
    from sessionflow.worker.main import stop_on_signals

    settings = Settings.from_env()
    agents = _load(agent_specs)
    try:
        config = gateway_config(settings, agents)
    except ConfigError as err:
        _fail(err)
    if not config.api_keys:
        _fail(
            ConfigError(
                "SESSIONFLOW_API_KEYS is not set: the gateway needs "
                "'<key of 8+ characters>:<tenant>[,<key>:<tenant>...]'"
            )
        )
    remember_secret(*config.api_keys)

    async def serve() -> None:
        stop = stop_on_signals()
        hear_uvicorn()
        option = "SESSIONFLOW_GATEWAY_PORT"
        check_port_free(config.host, config.port, "the gateway", option)
        click.echo(f"Gateway on http://{config.host}:{config.port}", err=True)
        await serve_gateway(settings, config, stop, agents=agents)

    _run(serve(), explain=exit_reason)


@main.command("codec-server")
def codec_server() -> None:
    """Serve the Temporal UI's remote codec endpoint until SIGINT or SIGTERM.

    Resolves payload and transcript references, so the UI and `temporal workflow show
    --codec-endpoint` show every message of a session. Listens on
    SESSIONFLOW_CODEC_HOST:SESSIONFLOW_CODEC_PORT; reads SESSIONFLOW_PAYLOAD_STORE;
    with SESSIONFLOW_CODEC_TOKEN set every request needs that bearer token, and without
    it the server listens on a loopback address only.
    """
    import ipaddress

    from sessionflow.cli.codec import serve_codec
    from sessionflow.cli.dev import check_port_free, exit_reason, hear_uvicorn
    from sessionflow.logs import remember_secret
    from sessionflow.storage import external_storage_from_settings
    from sessionflow.worker.main import stop_on_signals

    settings = Settings.from_env()
    host, port = settings.codec_host, settings.codec_port
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not settings.codec_token and not loopback:
        _fail(
            ConfigError(
                f"SESSIONFLOW_CODEC_TOKEN is not set: the codec server shows every "
                f"message, so it listens on {host} only with a token (or on 127.0.0.1)"
            )
        )
    remember_secret(settings.codec_token)
    try:
        external_storage_from_settings(settings)  # a bad payload store: one line, at once
    except SessionflowError as err:
        _fail(err)

    async def serve() -> None:
        stop = stop_on_signals()
        hear_uvicorn()
        check_port_free(host, port, "the codec server", "SESSIONFLOW_CODEC_PORT")
        click.echo(f"Codec server on http://{host}:{port}", err=True)
        await serve_codec(settings, host, port, settings.codec_token, stop)

    _run(serve(), explain=exit_reason)


@main.command()
@_agents_option
@click.option(
    "--role",
    type=click.Choice([r.value for r in WorkerRole]),
    default=None,
    help="Run workflow tasks, activities, or both; default SESSIONFLOW_WORKER_ROLE, else all.",
)
def worker(agent_specs: tuple[str, ...], role: str | None) -> None:
    """Run a worker against TEMPORAL_ADDRESS and REDIS_URL until SIGINT or SIGTERM.

    Each agent's sessions come on its own task queue, SESSIONFLOW_TASK_QUEUE.<agent>,
    so workers serving different agents can share a Temporal namespace and a base queue.
    With --role, workflow tasks and activities run in separate processes, so workflow
    activations cannot stall the activities streaming tokens; a deployment then needs
    workers of both roles for every agent.
    """
    from sessionflow.worker.main import run_worker, stop_on_signals

    agents = _load(agent_specs)
    settings = Settings.from_env()
    if role is not None:
        settings = settings.model_copy(update={"worker_role": WorkerRole(role)})

    async def serve() -> None:
        await run_worker(settings, agents, stop_on_signals())

    _run(serve())


@main.command()
@click.option(
    "--build-id",
    default=None,
    help="Make this build current (new sessions start on it), or with --ramp, ramp it.",
)
@click.option(
    "--ramp",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="PERCENT",
    help="Start this share of new sessions on --build-id, the rest on the current build.",
)
@click.option(
    "--wait-drained",
    is_flag=True,
    help="Wait until no old build has running sessions pinned to it (its workers may stop).",
)
@click.option(
    "--timeout", type=float, default=None, help="Seconds --wait-drained waits; default no limit."
)
def deploy(
    build_id: str | None, ramp: float | None, wait_drained: bool, timeout: float | None
) -> None:
    """Show the Worker Deployment's builds (SESSIONFLOW_DEPLOYMENT) and move new sessions
    between them.

    Sessions are pinned to the build they started on; new ones start on the current
    build. The cycle: start the new build's workers, `deploy --build-id NEW` (or
    `--ramp 10` first), `deploy --wait-drained`, then stop the old build's workers.
    """
    from sessionflow.cli.deploying import run_deploy

    if ramp is not None and build_id is None:
        raise click.UsageError("--ramp needs --build-id (the build to ramp)")
    settings = Settings.from_env()
    _run(
        run_deploy(
            settings, build_id=build_id, ramp=ramp, wait_drained=wait_drained, timeout=timeout
        )
    )


@main.command("replay-check")
@click.option(
    "--histories",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("tests/histories"),
    show_default=True,
    help="A folder of recorded workflow histories (*.json, as `temporal workflow show "
    "--output json` writes them).",
)
def replay_check(histories: Path) -> None:
    """Replay recorded session histories against this code; exit 1 if any fails.

    A deploy gate: the histories of every session shape (tests/histories/record.py)
    must replay, or the code is not deterministic.
    """
    from sessionflow.cli.deploying import run_replay_check

    _run(run_replay_check(histories))


@main.command()
@click.option("--message", default=DEMO_MESSAGE, show_default=True)
@click.option(
    "--keep/--no-keep",
    default=None,
    help="Keep the stack running afterwards to explore the UI (default: when interactive).",
)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds.")
@click.option(
    "--model",
    default=None,
    help="Run the demo on a real model, e.g. anthropic/claude-sonnet-4-6 (needs "
    "ANTHROPIC_API_KEY). Default: the offline scripted model.",
)
def demo(message: str, keep: bool | None, timeout: float, model: str | None) -> None:
    """Run one demo session and stream its answer.

    Uses the stack at TEMPORAL_ADDRESS/REDIS_URL if one is running, else starts one.
    SESSIONFLOW_SANDBOX=e2b (with E2B_API_KEY) runs the tools in an E2B sandbox.
    """
    if (
        model is not None
        and model.startswith("anthropic/")
        and not Settings.from_env().anthropic_api_key
    ):
        raise click.ClickException(f"--model {model} needs ANTHROPIC_API_KEY")
    from sessionflow.cli.demo import run_demo

    _run(run_demo(message, sys.stdin.isatty() if keep is None else keep, timeout, model))


_tenant_option = click.option(
    "--tenant",
    default=None,
    help="Whose session: the id becomes <tenant>:<id>, as the gateway names a tenant's "
    "sessions. Default SESSIONFLOW_TENANT, else 'dev' with the local stack (what the web "
    "page of `sessionflow dev` shows); '' for none.",
)
_session_options = [
    click.argument("session_id"),
    click.option("--agent", default="demo", show_default=True, help="The session's agent."),
    _tenant_option,
]


def _tenant(option: str | None) -> str | None:
    """The tenant `--tenant` names, else the settings' (SESSIONFLOW_TENANT or the default)."""
    from sessionflow.config import parse_tenant

    try:
        return Settings.from_env().tenant if option is None else parse_tenant(option, "--tenant")
    except ConfigError as err:
        _fail(err)


def _cost(cost: float | None) -> str:
    return "cost unknown (no price)" if cost is None else f"${cost:.4f}"


def _session_id(session_id: str, tenant: str | None) -> str:
    from sessionflow.ids import tenant_session_id

    return tenant_session_id(_tenant(tenant), session_id)


def _with_session_options(fn: Any) -> Any:
    for option in reversed(_session_options):
        fn = option(fn)
    return fn


@main.command()
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
    agent: str,
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
    turn budget); a turn that reaches one ends as budget_exceeded, with a note."""
    from sessionflow.cli.terminal import TerminalRenderer
    from sessionflow.client.client import SessionClient

    full_id = _session_id(session_id, tenant)

    async def go() -> None:
        async with await SessionClient.connect() as client:
            session = client.agent(agent).session(full_id)
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
            async for event in result.stream():
                renderer.render(event)
            # The stream ends with the step's last chunk, a moment before the workflow
            # records the step: return once it has, so `history` right after shows it.
            (await result.outcome).raise_for_failure()

    _run(go())


@main.command()
@_with_session_options
@click.argument("new_id")
@click.option("--at", "at_message_id", default=None, help="The last message the fork keeps.")
def fork(
    session_id: str, agent: str, tenant: str | None, new_id: str, at_message_id: str | None
) -> None:
    """Start session NEW_ID with SESSION_ID's history up to --at (default the newest
    message), its agent and its state as of then; SESSION_ID is left as it was."""
    from sessionflow.client.client import SessionClient

    full_id = _session_id(session_id, tenant)
    full_new_id = _session_id(new_id, tenant)

    async def go() -> None:
        async with await SessionClient.connect() as client:
            forked = (
                await client.agent(agent)
                .session(full_id)
                .fork(full_new_id, at_message_id=at_message_id)
            )
            click.echo(f"forked {session_id} into {new_id} ({forked.workflow_id})")

    _run(go())


@main.command()
@_with_session_options
def chat(session_id: str, agent: str, tenant: str | None) -> None:
    """Chat with a session: type messages, watch answers stream, answer approvals.

    Ctrl-C interrupts the running answer; Ctrl-C again, or Ctrl-D, quits.
    """
    from sessionflow.cli.chat import Chat
    from sessionflow.client.client import SessionClient

    full_id = _session_id(session_id, tenant)

    async def go() -> None:
        async with await SessionClient.connect() as client:
            await Chat(client.agent(agent).session(full_id)).run()

    _run(go())


@main.command()
@click.argument("workflow_id")
@click.option("--after", default=None, help="Resume after this event id.")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
def tail(workflow_id: str, after: str | None, as_json: bool) -> None:
    """Follow a session's stream by workflow id, surviving Redis disconnects."""
    from sessionflow.cli.chat import tail as follow
    from sessionflow.cli.terminal import TerminalRenderer
    from sessionflow.connections import redis_client
    from sessionflow.streams.reader import StreamReader

    async def go() -> None:
        redis = redis_client(Settings.from_env().redis_url)
        renderer = TerminalRenderer()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        events = follow(StreamReader(redis), workflow_id, after)
        reading = asyncio.ensure_future(_print(events, renderer, as_json))
        await asyncio.wait(
            {reading, asyncio.ensure_future(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        reading.cancel()

    _run(go())


async def _print(events: Any, renderer: Any, as_json: bool) -> None:
    from sessionflow.cli.safe_text import json_text

    async for event in events:
        if as_json:
            line = {"id": event.id, "message_id": event.message_id, "step": event.step,
                    "attempt": event.attempt, "chunk": event.chunk.to_wire()}  # fmt: skip
            click.echo(json_text(json.dumps(line)))
        else:
            renderer.render(event)


@main.command()
@click.option("--status", default=None, help="Only sessions with this status, e.g. needs-approval.")
@click.option("--agent", "agent_name", default=None, help="Only this agent's sessions.")
@click.option("--limit", type=int, default=50, show_default=True)
@_tenant_option
def sessions(status: str | None, agent_name: str | None, limit: int, tenant: str | None) -> None:
    """List sessions, newest first, with their status (a Temporal visibility query).

    With a tenant, only its sessions, by the ids it gives them (as the web page lists
    them); with --tenant '', every session by its full id."""
    from sessionflow.cli.safe_text import line_text
    from sessionflow.client.listing import list_sessions

    owner = _tenant(tenant)
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

    _run(go())


@main.command()
@_with_session_options
def inspect(session_id: str, agent: str, tenant: str | None) -> None:
    """Show one session: status, usage, pending approvals and its last messages."""
    from sessionflow.cli.safe_text import line_text as safe
    from sessionflow.client.client import SessionClient
    from sessionflow.ids import tenant_session_id

    owner = _tenant(tenant)
    full_id = tenant_session_id(owner, session_id)

    async def go() -> None:
        async with await SessionClient.connect() as client:
            session = client.agent(agent).session(full_id)
            info = await session.info()
            usage = await session.usage()
            settings = Settings.from_env()
            whose = f"tenant {owner}, " if owner else ""
            # Ids, names and text below may be anyone's: each is printed on one line,
            # its control characters escaped (sessionflow.cli.safe_text).
            click.echo(f"Session     {safe(session_id)} ({whose}agent {safe(session.agent)})")
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

    _run(go())


@main.command()
@_with_session_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(session_id: str, agent: str, tenant: str | None, yes: bool) -> None:
    """Erase a session everywhere: stop it, kill its sandbox, delete its stream, its
    stored payloads and its Temporal history. It cannot be undone."""
    from sessionflow.cli.safe_text import line_text
    from sessionflow.client.client import SessionClient

    full_id = _session_id(session_id, tenant)
    if not yes:
        click.confirm(f"Delete session {line_text(session_id)} for good?", abort=True)

    async def go() -> None:
        async with await SessionClient.connect() as client:
            await client.agent(agent).session(full_id).delete()
        click.echo(f"Deleted session {line_text(session_id)}")

    _run(go())


@main.command()
@_with_session_options
@click.option("--json", "as_json", is_flag=True, help="Print messages as JSON lines.")
def history(session_id: str, agent: str, tenant: str | None, as_json: bool) -> None:
    """Print a session's messages: each one's text, reasoning, tool calls (with their
    state and a short output) and files, in the order they happened."""
    from sessionflow.cli.safe_text import json_text
    from sessionflow.cli.terminal import message_pieces
    from sessionflow.client.client import SessionClient

    full_id = _session_id(session_id, tenant)

    async def go() -> None:
        async with await SessionClient.connect() as client:
            for i, message in enumerate(await client.agent(agent).session(full_id).history()):
                if as_json:
                    click.echo(json_text(message.model_dump_json()))
                    continue
                if i:
                    click.echo()
                for text, style in message_pieces(message):
                    click.echo(click.style(text, **style) if style else text, nl=False)

    _run(go())


def _register_schedules() -> None:
    from sessionflow.cli.schedules import schedule_group

    main.add_command(schedule_group(_run, _tenant), "schedule")


_register_schedules()


if __name__ == "__main__":
    main()
