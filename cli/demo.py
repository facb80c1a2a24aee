"""`sessionflow demo`: one session of the demo agent, streamed to the terminal.

It uses the stack at TEMPORAL_ADDRESS/REDIS_URL when one is running, else starts a
local one (on the usual ports when free, so the printed UI link matches
`sessionflow dev`), and always runs its own worker on a task queue of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import click

from sessionflow.config import Settings

DEMO_TASK_QUEUE = "sessionflow-demo"


async def run_demo(message: str, keep: bool, timeout: float, model: str | None) -> None:
    """One demo session, streamed to the terminal; see `sessionflow demo --help`."""
    from sessionflow.agents.demo import demo_agent as scripted_demo
    from sessionflow.agents.demo import demo_agent_with
    from sessionflow.cli.localstack import LocalStack, StackConfig
    from sessionflow.cli.safe_text import body_text
    from sessionflow.cli.terminal import TerminalRenderer
    from sessionflow.client.client import SessionClient
    from sessionflow.errors import ConnectionFailed
    from sessionflow.worker.main import run_worker, stop_on_signals

    # The demo's worker is short-lived: no metrics endpoint (it may run beside `dev`).
    settings = Settings.from_env().model_copy(
        update={"task_queue": DEMO_TASK_QUEUE, "metrics_address": ""}
    )
    demo_agent = scripted_demo if model is None else demo_agent_with(model)
    stack: LocalStack | None = None
    try:
        client = await SessionClient.connect(settings=settings)
        click.echo(f"Using the running stack at {settings.temporal_address}.")
    except ConnectionFailed:
        # The usual ports when free, so the printed link matches `sessionflow dev`.
        config = StackConfig(
            data_dir=settings.data_dir,
            temporal_port=_port_or_free(7233),
            ui_port=_port_or_free(8233),
            redis_port=_port_or_free(6379),
        )
        click.echo(f"Starting a local stack (data in {config.data_dir}) ...")
        stack = LocalStack(config)
        await stack.start()
        settings = config.point(settings)
        client = await SessionClient.connect(settings=settings)

    stop = stop_on_signals()
    serving = asyncio.create_task(run_worker(settings, [demo_agent], stop))
    try:
        session = client.agent(demo_agent.name).session(f"demo-{uuid.uuid4().hex[:8]}")
        click.echo(click.style(f"\nyou: {body_text(message)}\n", bold=True))
        async with asyncio.timeout(timeout):
            result = await session.send(message)
            renderer = TerminalRenderer()
            async for event in result.stream():
                renderer.render(event)
            outcome = await result.outcome
        usage = (await session.info()).usage
        kind = "scripted estimates" if model is None else model
        click.echo(
            f"\nTurn {outcome.status.value}; {usage.input_tokens} input and "
            f"{usage.output_tokens} output tokens ({kind})."
        )
        click.echo(
            f"See the session in the Temporal UI: {settings.workflow_url(session.workflow_id)}"
        )
        if stack is not None and not keep:
            click.echo("(`sessionflow dev` serves the same data on http://127.0.0.1:8233.)")
        if keep and stack is not None:
            click.echo("The stack keeps running so you can look around; press Ctrl-C to stop.")
            await stop.wait()
    except TimeoutError:
        raise click.ClickException(
            f"the demo did not finish within {timeout:.0f}s; see the logs in "
            f"{settings.data_dir / 'logs'}"
        ) from None
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        await client.close()
        if stack is not None:
            stack.stop()


def _port_or_free(port: int) -> int:
    from sessionflow.cli.localstack import free_port, port_open

    return free_port() if port_open("127.0.0.1", port) else port
