"""Serving the codec server (`gateway.codec`): on its own (`sessionflow codec-server`)
and inside `sessionflow dev`, whose Temporal UI is then pointed at it
(`--ui-codec-endpoint`), so the dev UI shows every message of a long session with no
setting in the browser."""

from __future__ import annotations

import asyncio

import click

from sessionflow.config import Settings


async def serve_codec(
    settings: Settings, host: str, port: int, token: str | None, stop: asyncio.Event
) -> None:
    """Serve until `stop` is set, reading the payload store `settings` name."""
    from sessionflow.gateway.codec import create_codec_app
    from sessionflow.gateway.main import serve_gateway
    from sessionflow.storage import close_external_storage, external_storage_from_settings
    from sessionflow.storage.resolving import PayloadResolver

    storage = external_storage_from_settings(settings)
    app = create_codec_app(
        PayloadResolver(storage).decode, token=token, origins=list(settings.codec_cors_origins)
    )
    try:
        await serve_gateway(app, host, port, stop)
    finally:
        await close_external_storage(storage)


async def serve_codec_for_dev(
    settings: Settings, host: str, port: int, stop: asyncio.Event
) -> None:
    """`serve_codec` for `dev`, where it is a convenience: a server that cannot listen
    (another program took the port meanwhile) is told in one line and does not stop
    the stack."""
    try:
        await serve_codec(settings, host, port, None, stop)
    except (SystemExit, OSError) as err:
        click.echo(
            f"The codec server could not listen on {host}:{port} ({err}); the UI "
            "shows references where long sessions keep their messages",
            err=True,
        )
        await stop.wait()


def dev_codec_port(host: str, port: int) -> int | None:
    """The codec server's port for `dev`, or None when another program has it (`dev`
    then runs without one rather than fail: it is a convenience of the UI's)."""
    from sessionflow.cli.localstack import port_open

    if not port_open(host, port):
        return port
    click.echo(
        f"Port {port} on {host} is taken: no codec server (SESSIONFLOW_CODEC_PORT), so the "
        "UI shows references where long sessions keep their messages",
        err=True,
    )
    return None
