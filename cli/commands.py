"""The `sessionflow` command: the local stack, a worker, the demo, and session tools."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from sessionflow.cli.running import fail as _fail
from sessionflow.cli.running import run as _run
from sessionflow.cli.session_commands import SESSION_COMMANDS
from sessionflow.cli.session_commands import tenant_of as _tenant
from sessionflow.config import ConfigError, Settings, WorkerRole
from sessionflow.errors import SessionflowError
from sessionflow.logs import configure_logging

DEFAULT_AGENTS = "sessionflow.agents.demo:demo_agent"
DEMO_MESSAGE = "Show me what you can do: look around, write a small program and run it."


def _load(specs: Sequence[str]) -> list[Any]:
    from sessionflow.cli.loading import load_agents

    try:
        return load_agents(specs, DEFAULT_AGENTS)
    except ConfigError as err:
        _fail(err)


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
    _run(run_dev(options))


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
        gateway_config,
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
        option = "SESSIONFLOW_GATEWAY_PORT"
        check_port_free(config.host, config.port, "the gateway", option)
        click.echo(f"Gateway on http://{config.host}:{config.port}", err=True)
        await serve_gateway(settings, config, stop, agents=agents)

    _run(serve())


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
    from sessionflow.cli.dev import check_port_free
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
        check_port_free(host, port, "the codec server", "SESSIONFLOW_CODEC_PORT")
        click.echo(f"Codec server on http://{host}:{port}", err=True)
        await serve_codec(settings, host, port, settings.codec_token, stop)

    _run(serve())


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


# The session commands: send, chat, tail, approve, deny, interrupt, close, delete,
# fork, history, export, rewind, inspect, sessions.
for _command in SESSION_COMMANDS:
    main.add_command(_command)


def _register_schedules() -> None:
    from sessionflow.cli.schedules import schedule_group

    main.add_command(schedule_group(_run, _tenant), "schedule")


_register_schedules()


if __name__ == "__main__":
    main()
