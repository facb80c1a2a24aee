"""`sessionflow deploy` and `sessionflow replay-check`: the operator's deploy cycle.

Start the new build's workers beside the old ones; check it replays every recorded
session shape (`replay-check`); make it current, or ramp a share of new sessions to it
(`deploy --build-id B [--ramp 10]`); watch the old builds drain as their pinned
sessions end (`deploy --wait-drained`); stop their workers. See the README's
Operations section.
"""

from __future__ import annotations

from pathlib import Path

import click
from temporalio.client import Client
from temporalio.service import RPCError

from sessionflow.cli.safe_text import line_text
from sessionflow.config import Settings
from sessionflow.worker import versions


class DeployFailed(click.ClickException):
    """The server refused a routing change: one line, exit status 1."""


async def _connect(settings: Settings) -> Client:
    from sessionflow.connections import connect_temporal

    return await connect_temporal(
        settings.temporal_address, settings.temporal_namespace, settings=settings
    )


def describe_lines(state: versions.DeploymentState | None, name: str, this_build: str) -> list[str]:
    """The deployment's builds as the command prints them."""
    if state is None:
        return [f"Deployment {name}: no worker has joined it yet", f"This code   {this_build}"]
    ramping = (
        f"{state.ramping} ({state.ramp_percentage:g}% of new sessions)" if state.ramping else "-"
    )
    lines = [
        f"Deployment  {name}",
        f"Current     {state.current or '- (new sessions go to unversioned workers)'}",
        f"Ramping     {ramping}",
        f"This code   {this_build}",
        "",
        f"{'BUILD':<40} {'STATUS':<10} CREATED",
    ]
    for build in state.builds:
        mine = "  (this code)" if build.build_id == this_build else ""
        lines.append(f"{line_text(build.build_id):<40} {build.status:<10} {build.created}{mine}")
    return lines


async def run_deploy(
    settings: Settings,
    *,
    build_id: str | None,
    ramp: float | None,
    wait_drained: bool,
    timeout: float | None,
) -> None:
    name = settings.deployment
    this_build = settings.build_id or versions.default_build_id()
    temporal = await _connect(settings)
    if build_id is not None:
        try:
            if ramp is None:
                await versions.set_current(temporal, name, build_id)
                click.echo(f"Build {build_id} is current: new sessions start on it.")
            else:
                await versions.set_ramping(temporal, name, build_id, ramp)
                click.echo(f"Build {build_id} ramps: {ramp:g}% of new sessions start on it.")
        except RPCError as err:
            raise DeployFailed(
                f"the server refused to route to build {build_id} of deployment {name}: "
                f"{' '.join(err.message.split())} (do its workers run and poll?)"
            ) from None
    if wait_drained:
        click.echo("Waiting for old builds to drain (their pinned sessions to end) ...")
        try:
            drained = await versions.wait_drained(temporal, name, timeout=timeout)
        except TimeoutError:
            raise DeployFailed(
                f"builds of deployment {name} still have running sessions after {timeout:g} s"
            ) from None
        if drained:
            click.echo(f"Drained, their workers may stop: {', '.join(drained)}")
    for line in describe_lines(await versions.describe(temporal, name), name, this_build):
        click.echo(line)


async def run_replay_check(folder: Path) -> None:
    """Replay every history in `folder`; exit 1 naming each one that fails."""
    from sessionflow.worker.replay import history_files, replay_histories

    paths = history_files(folder)
    if not paths:
        raise DeployFailed(f"no recorded histories (*.json) in {folder}")
    results = await replay_histories(paths)
    for result in results:
        verdict = "ok" if result.failure is None else f"FAILED: {result.failure}"
        click.echo(f"{result.name:<28} {result.events:>5} events  {verdict}")
    failed = [r.name for r in results if r.failure is not None]
    if failed:
        raise DeployFailed(
            f"{len(failed)} of {len(results)} histories do not replay on this code "
            f"({', '.join(failed)}): it is not deterministic against them"
        )
    click.echo(f"All {len(results)} histories replay on build {versions.default_build_id()}.")
