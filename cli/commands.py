"""The `sessionflow` command: the local stack, a worker, the demo, and session tools."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from sessionflow.config import LOCAL_REDIS_PASSWORD_FILE, Settings
from sessionflow.errors import SessionflowError
from sessionflow.logs import configure_logging

T = TypeVar("T")

DEFAULT_AGENTS = "sessionflow.agents.demo:demo_agent"
DEMO_MESSAGE = "Show me what you can do: look around, write a small program and run it."


def _run(coro: Awaitable[T]) -> NoReturn:
    """Run a command's coroutine to completion, then exit the process at once.

    The Temporal SDK's native runtime keeps threads that may call into Python while
    the interpreter finalizes, which can abort the process after a successful run;
    once the command's own work is done and flushed, nothing is left to finalize.
    """
    code = 0
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except SessionflowError as err:
        click.echo(f"Error: {err}", err=True)
        code = 1
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _load(specs: Sequence[str]) -> list[Any]:
    from sessionflow.agents.registry import load_agents

    found = []
    for spec in specs or [DEFAULT_AGENTS]:
        try:
            found.extend(load_agents(spec))
        except (ValueError, ImportError) as err:
            raise click.BadParameter(str(err), param_hint="--agents") from err
    return found


@click.group()
@click.version_option(package_name="sessionflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Durable LLM agent sessions on Temporal, streamed through Redis."""
    settings = Settings.from_env()
    # Interactive commands keep the terminal for the session's output.
    services = ctx.invoked_subcommand in ("dev", "worker", "gateway")
    explicit = "SESSIONFLOW_LOG_LEVEL" in os.environ
    level = settings.log_level if services or explicit else "warning"
    configure_logging(level, settings.log_format)


_agents_option = click.option(
    "--agents",
    "agent_specs",
    multiple=True,
    metavar="MODULE:ATTR",
    help=f"Agents to serve (repeatable); default {DEFAULT_AGENTS}.",
)


DEV_API_KEY = "sf-dev-key:dev"


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
    """
    from sessionflow.cli.localstack import LocalStack, StackConfig, port_open
    from sessionflow.gateway.config import parse_api_keys
    from sessionflow.logs import redact_url, remember_secret
    from sessionflow.worker.main import run_worker, stop_on_signals

    settings = Settings.from_env()
    agents = _load(agent_specs)
    own_keys = not os.environ.get("SESSIONFLOW_API_KEYS")
    gateway_config = replace(
        _gateway_config(agents),
        port=gateway_port,
        api_keys=parse_api_keys(os.environ.get("SESSIONFLOW_API_KEYS") or DEV_API_KEY),
    )
    if not own_keys:
        remember_secret(*gateway_config.api_keys)
    config = StackConfig(
        data_dir=data_dir or settings.data_dir,
        temporal_port=temporal_port,
        ui_port=ui_port,
        redis_port=redis_port,
    )

    async def serve() -> None:
        stop = stop_on_signals()
        if port_open(gateway_config.host, gateway_config.port):
            raise click.ClickException(
                f"port {gateway_config.port} is already in use; choose another with --gateway-port"
            )
        click.echo(f"Starting Temporal and Redis (data in {config.data_dir}) ...")
        async with LocalStack(config):
            local = config.point(settings)
            listening = asyncio.Event()
            gateway = asyncio.create_task(
                _serve_gateway(local, gateway_config, stop, listening, agents)
            )
            await asyncio.wait(
                {gateway, asyncio.ensure_future(listening.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            # Only our own development key is shown; configured keys are secrets.
            keys = (
                ", ".join(f"{k} (tenant {t})" for k, t in gateway_config.api_keys.items())
                if own_keys
                else "from SESSIONFLOW_API_KEYS, tenants "
                + ", ".join(sorted(set(gateway_config.api_keys.values())))
            )
            # The Redis password stays in its file; the export line reads it from there.
            password = config.data_dir / LOCAL_REDIS_PASSWORD_FILE
            redis_export = (
                f'"redis://:$(cat {shlex.quote(str(password.absolute()))})'
                f'@{config.host}:{config.redis_port}/0"'
            )
            from sessionflow.sandbox.registry import backend_from_settings

            backend = backend_from_settings(local)
            isolation = getattr(backend, "effective_isolation", None) or backend.name
            click.echo(
                f"\n  Temporal      {config.temporal_address}\n"
                f"  Temporal UI   {config.ui_url}\n"
                f"  Redis         {redact_url(config.redis_url)}\n"
                f"  Gateway       http://{gateway_config.host}:{gateway_config.port}"
                f"  (API keys: {keys})\n"
                f"  Task queue    {local.task_queue}\n"
                f"  Agents        {', '.join(a.name for a in agents)}\n"
                f"  Sandboxes     {isolation}\n\n"
                f"In another shell:\n"
                f"  export TEMPORAL_ADDRESS={config.temporal_address} "
                f"REDIS_URL={redis_export} TEMPORAL_UI_URL={config.ui_url} "
                f"SESSIONFLOW_PAYLOAD_STORE={shlex.quote(config.payload_store)}\n\n"
                "Press Ctrl-C to stop.\n"
            )
            try:
                await run_worker(local, agents, stop)
            finally:
                stop.set()
                await gateway
            click.echo("Stopping ...")

    _run(serve())


async def _serve_gateway(
    settings: Settings,
    config: Any,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    agents: Sequence[Any] = (),
) -> None:
    from sessionflow.client.client import SessionClient
    from sessionflow.gateway.app import create_app
    from sessionflow.gateway.main import serve_gateway

    # The client knows the agents served: others get 404, and context is validated
    # against their schemas before anything starts.
    async with await SessionClient.connect(settings=settings, agents=agents) as client:
        await serve_gateway(create_app(client, config), config.host, config.port, stop, started)


def _gateway_config(agents: Sequence[Any]) -> Any:
    """The gateway's settings, its default agent one of `agents`: the configured one
    (SESSIONFLOW_DEFAULT_AGENT, which must be served), else the first agent served."""
    from sessionflow.gateway.config import GatewayConfig

    try:
        config = GatewayConfig.from_env()
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    names = [a.name for a in agents]
    if config.default_agent in names:
        return config
    if os.environ.get("SESSIONFLOW_DEFAULT_AGENT"):
        raise click.ClickException(
            f"SESSIONFLOW_DEFAULT_AGENT={config.default_agent} is not among the agents "
            f"served ({', '.join(names)}); add it with --agents"
        )
    return replace(config, default_agent=names[0])


@main.command()
@_agents_option
def gateway(agent_specs: tuple[str, ...]) -> None:
    """Serve the HTTP gateway (REST, SSE, AI SDK chat transport) until SIGINT or SIGTERM.

    Needs SESSIONFLOW_API_KEYS ("key:tenant,..."); listens on SESSIONFLOW_GATEWAY_HOST
    and SESSIONFLOW_GATEWAY_PORT. Serves the agents of --agents (as the workers do):
    any other agent is refused (404).
    """
    from sessionflow.worker.main import stop_on_signals

    agents = _load(agent_specs)
    config = _gateway_config(agents)
    if not config.api_keys:
        raise click.ClickException(
            "no API keys configured: set SESSIONFLOW_API_KEYS to 'key:tenant[,key:tenant...]'"
        )
    from sessionflow.logs import remember_secret

    remember_secret(*config.api_keys)

    async def serve() -> None:
        stop = stop_on_signals()
        click.echo(f"Gateway on http://{config.host}:{config.port}", err=True)
        await _serve_gateway(Settings.from_env(), config, stop, agents=agents)

    _run(serve())


@main.command()
@_agents_option
def worker(agent_specs: tuple[str, ...]) -> None:
    """Run a worker against TEMPORAL_ADDRESS and REDIS_URL until SIGINT or SIGTERM."""
    from sessionflow.worker.main import run_worker, stop_on_signals

    agents = _load(agent_specs)

    async def serve() -> None:
        await run_worker(Settings.from_env(), agents, stop_on_signals())

    _run(serve())


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
        and not os.environ.get("ANTHROPIC_API_KEY")
    ):
        raise click.ClickException(f"--model {model} needs ANTHROPIC_API_KEY")
    from sessionflow.cli.demo import run_demo

    _run(run_demo(message, sys.stdin.isatty() if keep is None else keep, timeout, model))


_session_options = [
    click.argument("session_id"),
    click.option("--agent", default="demo", show_default=True, help="The session's agent."),
]


def _with_session_options(fn: Any) -> Any:
    for option in reversed(_session_options):
        fn = option(fn)
    return fn


@main.command()
@_with_session_options
@click.argument("text")
def send(session_id: str, agent: str, text: str) -> None:
    """Send TEXT to a session and stream the answer."""
    from sessionflow.cli.terminal import TerminalRenderer
    from sessionflow.client.client import SessionClient

    async def go() -> None:
        async with await SessionClient.connect() as client:
            result = await client.session(session_id, agent=agent).send(text)
            renderer = TerminalRenderer()
            async for event in result.stream():
                renderer.render(event)

    _run(go())


@main.command()
@_with_session_options
def chat(session_id: str, agent: str) -> None:
    """Chat with a session: type messages, watch answers stream, answer approvals.

    Ctrl-C interrupts the running answer; Ctrl-C again, or Ctrl-D, quits.
    """
    from sessionflow.cli.chat import Chat
    from sessionflow.client.client import SessionClient

    async def go() -> None:
        async with await SessionClient.connect() as client:
            await Chat(client.session(session_id, agent=agent)).run()

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
    async for event in events:
        if as_json:
            line = {"id": event.id, "message_id": event.message_id, "step": event.step,
                    "attempt": event.attempt, "chunk": event.chunk.to_wire()}  # fmt: skip
            click.echo(json.dumps(line))
        else:
            renderer.render(event)


@main.command()
@click.option("--status", default=None, help="Only sessions with this status, e.g. needs-approval.")
@click.option("--agent", "agent_name", default=None, help="Only this agent's sessions.")
@click.option("--limit", type=int, default=50, show_default=True)
def sessions(status: str | None, agent_name: str | None, limit: int) -> None:
    """List sessions, newest first, with their status (a Temporal visibility query)."""
    from sessionflow.client.listing import list_sessions

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
        rows = await list_sessions(temporal, status=status, agent=agent_name, limit=limit)
        click.echo(f"{'SESSION':<32} {'AGENT':<12} {'STATUS':<15} {'TOKENS':>8}  LAST ACTIVITY")
        for row in rows:
            click.echo(
                f"{row.session_id:<32} {row.agent:<12} {row.status:<15} {row.tokens:>8}  "
                f"{row.last_activity or '-'}"
            )
        if not rows:
            click.echo("(no sessions)")

    _run(go())


@main.command()
@_with_session_options
def inspect(session_id: str, agent: str) -> None:
    """Show one session: status, usage, pending approvals and its last messages."""
    from sessionflow.client.client import SessionClient

    async def go() -> None:
        async with await SessionClient.connect() as client:
            session = client.session(session_id, agent=agent)
            info = await session.info()
            usage = await session.usage()
            settings = Settings.from_env()
            click.echo(f"Session     {session.id} (agent {session.agent})")
            click.echo(f"Workflow    {session.workflow_id}  (run {info.run_count})")
            click.echo(f"Temporal UI {settings.workflow_url(session.workflow_id)}")
            click.echo(f"Status      {info.status.value}; {info.queued} queued")
            click.echo(f"Sandbox     {info.sandbox_id or '-'}")
            pending = ", ".join(info.pending_approvals) or "none"
            click.echo(f"Approvals   {pending}")
            total = usage.total
            click.echo(
                f"Usage       {total.input_tokens} in, {total.output_tokens} out, "
                f"{total.cache_read_tokens} cache read, {total.cache_write_tokens} cache write"
            )
            for model, used in usage.by_model.items():
                click.echo(f"            {model}: {used.input_tokens} in, {used.output_tokens} out")
            click.echo(f"Messages    {info.message_count}; the last ones:")
            offset = max(info.message_count - 6, 0)
            for message in await session.history(offset=offset):
                text = " ".join(message.text().split())
                text = text if len(text) <= 100 else text[:99] + "…"
                tools = ", ".join(f"{p.tool_name} ({p.state.value})" for p in message.tool_parts())
                extra = f" [{tools}]" if tools else ""
                click.echo(f"  {message.role.value:>9} {message.status.value:<11} {text}{extra}")

    _run(go())


@main.command()
@_with_session_options
@click.option("--json", "as_json", is_flag=True, help="Print messages as JSON lines.")
def history(session_id: str, agent: str, as_json: bool) -> None:
    """Print a session's messages."""
    from sessionflow.client.client import SessionClient

    async def go() -> None:
        async with await SessionClient.connect() as client:
            for message in await client.session(session_id, agent=agent).history():
                if as_json:
                    click.echo(message.model_dump_json())
                    continue
                click.echo(click.style(f"{message.role.value}:", bold=True) + f" {message.text()}")
                for part in message.tool_parts():
                    click.echo(f"  [{part.tool_name} {part.state.value}] {json.dumps(part.input)}")

    _run(go())


if __name__ == "__main__":
    main()
