"""`sessionflow dev`, and the gateway as the `gateway` and `dev` commands set it up.

`dev` says it is ready only once every service answers: Temporal and Redis (the local
stack waits for them), the worker (the Temporal server has seen it poll each agent's
task queue) and the gateway (`GET /healthz` answers 200). A service that fails, at
start or later, stops `dev` with its error on one line and a non-zero exit status;
the servers die with `dev` however it ends (see `sessionflow.cli.localstack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import click

from sessionflow.agents.definition import Agent
from sessionflow.config import (
    LOCAL_REDIS_PASSWORD_FILE,
    LOCAL_TENANT,
    ConfigError,
    Settings,
    agent_task_queue,
    parse_api_keys,
)

DEV_API_KEY = f"sf-dev-key:{LOCAL_TENANT}"
# How long the worker and the gateway may take to answer once Temporal and Redis do.
READY_TIMEOUT = 120.0


class ServiceFailed(click.ClickException):
    """A service of `dev` failed: one line, exit status 1."""


def _one_line(err: BaseException) -> str:
    """`err` as one line; its type is named unless it is one of ours."""
    from sessionflow.errors import SessionflowError

    text = " ".join(str(err).split()) or type(err).__name__
    ours = isinstance(err, SessionflowError | click.ClickException)
    return text if ours else f"{type(err).__name__}: {text}"


def api_keys(raw: str) -> dict[str, str]:
    """`SESSIONFLOW_API_KEYS` parsed, or a `ConfigError` (never showing a key)."""
    return parse_api_keys(raw)


def gateway_config(settings: Settings, agents: Sequence[Agent]) -> Any:
    """The gateway's settings, its default agent one of `agents`: the configured one
    (SESSIONFLOW_DEFAULT_AGENT, which must be served), else the first agent served."""
    from sessionflow.gateway.config import GatewayConfig

    config = GatewayConfig.from_settings(settings)
    names = [a.name for a in agents]
    if config.default_agent in names:
        return config
    if "default_agent" in settings.model_fields_set:
        raise ConfigError(
            f"SESSIONFLOW_DEFAULT_AGENT={config.default_agent} is not among the agents "
            f"served ({', '.join(names)}); add it with --agents"
        )
    return replace(config, default_agent=names[0])


async def serve_gateway(
    settings: Settings, config: Any, stop: asyncio.Event, agents: Sequence[Agent] = ()
) -> None:
    from sessionflow.client.client import SessionClient
    from sessionflow.gateway.app import create_app
    from sessionflow.gateway.main import serve_gateway

    # The client knows the agents served: others get 404, and context is validated
    # against their schemas before anything starts.
    async with await SessionClient.connect(settings=settings, agents=agents) as client:
        app = create_app(client, config)
        # Out of later collections, as a worker's (`worker.main.freeze_startup_heap`): a
        # full collection of the start-up heap stalls every SSE stream of the process.
        gc.collect()
        gc.freeze()
        await serve_gateway(app, config.host, config.port, stop)


def check_port_free(host: str, port: int, what: str, option: str) -> None:
    """Refuse at once, naming the port, when another program listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ServiceFailed(
                    f"port {port} on {host} (for {what}) is already in use by another "
                    f"program; choose another with {option}"
                ) from None
            raise ServiceFailed(
                f"cannot listen on {host}:{port} (for {what}): {err.strerror}"
            ) from None


async def _answers(host: str, port: int) -> bool:
    """Whether the gateway answers `GET /healthz` with 200."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(
            f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        return status.split()[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _probe_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


@dataclass
class DevOptions:
    stack: Any  # StackConfig
    settings: Settings
    agents: Sequence[Agent]
    gateway: Any  # GatewayConfig
    own_keys: bool


async def _ready(options: DevOptions, worker_ready: asyncio.Event) -> None:
    await worker_ready.wait()
    host, port = _probe_host(options.gateway.host), options.gateway.port
    while True:
        if await _answers(host, port):
            return
        await asyncio.sleep(0.1)


async def _first_failure(
    services: dict[str, asyncio.Task[None]], until: asyncio.Future[Any], stop: asyncio.Event
) -> None:
    """Wait for `until` or `stop`; raise `ServiceFailed` if a service ends first."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait(
            {until, stopping, *services.values()}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopping.cancel()
    if stop.is_set():
        return
    for name, task in services.items():
        if task.done():
            err = task.exception() if not task.cancelled() else None
            reason = _one_line(err) if err is not None else "it stopped by itself"
            raise ServiceFailed(f"{name} failed: {reason}")
    until.result()


async def run_dev(options: DevOptions) -> None:
    """Run the stack, a worker and the gateway until SIGINT or SIGTERM."""
    from sessionflow.cli.codec import dev_codec_port, serve_codec_for_dev
    from sessionflow.cli.localstack import LocalStack
    from sessionflow.providers.registry import providers_from_settings
    from sessionflow.sandbox.registry import backend_from_settings
    from sessionflow.worker.main import run_worker, stop_on_signals

    stop = stop_on_signals()
    gateway, config = options.gateway, options.stack
    # Bad sandbox or provider settings fail here, before anything starts (exit status 2).
    backend = backend_from_settings(
        options.settings.model_copy(update={"data_dir": config.data_dir})
    )
    providers_from_settings(options.settings)
    check_port_free(gateway.host, gateway.port, "the gateway", "--gateway-port")
    # The UI decodes through the codec server (`cli.codec`), when its port is free.
    codec_port = dev_codec_port(config.host, options.settings.codec_port)
    if codec_port is not None:
        config = replace(config, codec_endpoint=f"http://{config.host}:{codec_port}")
    click.echo(f"Starting Temporal and Redis (data in {config.data_dir}) ...")
    async with LocalStack(config, say=lambda line: click.echo(line, err=True)) as stack:
        local = config.point(options.settings)
        # Again: another program may have taken it while the servers started.
        check_port_free(gateway.host, gateway.port, "the gateway", "--gateway-port")
        worker_ready = asyncio.Event()
        services = {
            "Temporal or Redis": asyncio.create_task(stack.watch()),
            # The stack's only worker: its build is current, even when the data directory
            # knew an earlier one (sessions pinned to that one wait for its code).
            "the worker": asyncio.create_task(
                run_worker(local, options.agents, stop, worker_ready, make_current="always")
            ),
            "the gateway": asyncio.create_task(serve_gateway(local, gateway, stop, options.agents)),
        }
        if codec_port is not None:
            services["the codec server"] = asyncio.create_task(
                serve_codec_for_dev(local, config.host, codec_port, stop)
            )
        ready = asyncio.create_task(_ready(options, worker_ready))
        forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    await _first_failure(services, ready, stop)
            except TimeoutError:
                waiting = "the gateway" if worker_ready.is_set() else "the worker"
                raise ServiceFailed(
                    f"{waiting} did not answer within {READY_TIMEOUT:g} s"
                ) from None
            if not stop.is_set():
                isolation = getattr(backend, "effective_isolation", None) or backend.name
                click.echo(_banner(replace(options, stack=config), local, isolation))
                await _first_failure(services, forever, stop)
        finally:
            ready.cancel()
            forever.cancel()
            stop.set()
            services.pop("Temporal or Redis").cancel()
            await asyncio.gather(*services.values(), return_exceptions=True)
            click.echo("Stopping ...")


def _banner(options: DevOptions, local: Settings, isolation: str) -> str:
    from sessionflow.logs import redact_url

    config, gateway = options.stack, options.gateway
    # Only our own development key is shown; configured keys are secrets.
    keys = (
        ", ".join(f"{k} (tenant {t})" for k, t in gateway.api_keys.items())
        if options.own_keys
        else "from SESSIONFLOW_API_KEYS, tenants "
        + ", ".join(sorted(set(gateway.api_keys.values())))
    )
    # The Redis password stays in its file; the export line reads it from there.
    password = config.data_dir / LOCAL_REDIS_PASSWORD_FILE
    redis_export = (
        f'"redis://:$(cat {shlex.quote(str(password.absolute()))})'
        f'@{config.host}:{config.redis_port}/0"'
    )
    queues = ", ".join(agent_task_queue(local.task_queue, a.name) for a in options.agents)
    # The CLI then names sessions as the gateway does for the development key, so the
    # web page lists what `sessionflow send` started.
    tenant = f" SESSIONFLOW_TENANT={LOCAL_TENANT}" if options.own_keys else ""
    return (
        f"\n  Temporal      {config.temporal_address}\n"
        f"  Temporal UI   {config.ui_url}"
        + (f"  (decodes through {config.codec_endpoint})" if config.codec_endpoint else "")
        + "\n"
        f"  Redis         {redact_url(config.redis_url)}\n"
        f"  Gateway       http://{gateway.host}:{gateway.port}"
        f"  (API keys: {keys})\n"
        f"  Agents        {', '.join(a.name for a in options.agents)}\n"
        f"  Task queues   {queues} (one per agent)\n"
        f"  Sandboxes     {isolation}\n\n"
        f"In another shell:\n"
        f"  export TEMPORAL_ADDRESS={config.temporal_address} "
        f"REDIS_URL={redis_export} TEMPORAL_UI_URL={config.ui_url} "
        f"SESSIONFLOW_PAYLOAD_STORE={shlex.quote(config.payload_store)}{tenant}\n\n"
        "Press Ctrl-C to stop.\n"
    )
