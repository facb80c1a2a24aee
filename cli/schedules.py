"""`sessionflow schedule ...`: a session's scheduled messages from the command line
(`create`, `list`, `pause`, `resume`, `trigger`, `delete`), named for a tenant as the
other session commands name sessions. Built by `schedule_group` from the command
module's helpers, so this module does not import it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import click

from sessionflow.cli.safe_text import line_text
from sessionflow.contract import IfBusy

Run = Callable[[Awaitable[Any]], Any]
Tenant = Callable[[str | None], str | None]


def schedule_group(run: Run, tenant_of: Tenant) -> click.Group:
    """The `schedule` command group; `run` runs a command's coroutine and exits,
    `tenant_of` turns `--tenant` into the tenant (or None)."""

    @click.group()
    def schedule() -> None:
        """Send a message to a session on an interval or a cron (Temporal Schedules)."""

    agent_option = click.option(
        "--agent", default="demo", show_default=True, help="The session's agent."
    )
    tenant_option = click.option(
        "--tenant", default=None, help="Whose session (as for `send`); '' for none."
    )

    @schedule.command()
    @click.argument("session_id")
    @click.option("--message", "-m", required=True, help="The text sent each time.")
    @click.option("--every", default=None, help="An interval: 90s, 15m, 1h, 2h30m, 1d.")
    @click.option("--cron", default=None, help="A cron expression, in UTC ('0 9 * * mon-fri').")
    @click.option("--name", default=None, help="The schedule's name (default: a new one).")
    @click.option(
        "--if-busy",
        type=click.Choice([s.value for s in IfBusy]),
        default=IfBusy.ENQUEUE.value,
        show_default=True,
        help="While a turn runs: enqueue, or interrupt it (reject and rollback queue).",
    )
    @click.option("--paused", is_flag=True, help="Create it paused.")
    @agent_option
    @tenant_option
    def create(
        session_id: str,
        message: str,
        every: str | None,
        cron: str | None,
        name: str | None,
        if_busy: str,
        paused: bool,
        agent: str,
        tenant: str | None,
    ) -> None:
        """Send MESSAGE to SESSION_ID every --every or on --cron."""
        owner = tenant_of(tenant)

        async def go() -> None:
            async with await _connect() as client:
                session = client.agent(agent).session(_full(owner, session_id))
                handle = await session.schedule(
                    message, every=every, cron=cron, name=name, if_busy=if_busy, paused=paused
                )
                info = await handle.describe()
                when = f"every {info.every}" if info.every else f"on '{line_text(cron or '')}'"
                click.echo(
                    f"Schedule {line_text(info.name)}: sends {line_text(message[:60])!r} to "
                    f"{line_text(session_id)} {when}" + (" (paused)" if info.paused else "")
                )
                if info.next_runs:
                    click.echo(f"Next        {info.next_runs[0].isoformat()}")

        run(go())

    @schedule.command("list")
    @click.argument("session_id", required=False)
    @click.option("--agent", default=None, help="Only this agent's sessions' schedules.")
    @tenant_option
    def list_schedules(session_id: str | None, agent: str | None, tenant: str | None) -> None:
        """List schedules: of SESSION_ID, or of every session of the tenant."""
        owner = tenant_of(tenant)
        prefix = f"{owner}:" if owner else ""

        async def go() -> None:
            async with await _connect() as client:
                rows = await client.schedules.list(
                    session_id=_full(owner, session_id) if session_id else None,
                    agent=agent,
                    prefix=prefix or None,
                )
                click.echo(f"{'SESSION':<28} {'NAME':<16} {'WHEN':<22} {'STATE':<7} MESSAGE")
                for row in rows:
                    when = f"every {row.every}" if row.every else f"cron {row.cron}"
                    click.echo(
                        f"{line_text(row.session_id.removeprefix(prefix)):<28} "
                        f"{line_text(row.name):<16} {line_text(when):<22} "
                        f"{'paused' if row.paused else 'active':<7} "
                        f"{line_text(' '.join(row.message.split())[:50])}"
                    )
                if not rows:
                    click.echo("(no schedules)")

        run(go())

    def _change(verb: str, doc: str) -> None:
        @schedule.command(verb, help=doc)
        @click.argument("session_id")
        @click.argument("name", required=False)
        @agent_option
        @tenant_option
        def change(session_id: str, name: str | None, agent: str, tenant: str | None) -> None:
            owner = tenant_of(tenant)

            async def go() -> None:
                async with await _connect() as client:
                    session = client.agent(agent).session(_full(owner, session_id))
                    chosen = name or await _only_schedule(session)
                    handle = session.get_schedule(chosen)
                    await getattr(handle, verb)()
                    click.echo(f"Schedule {line_text(chosen)} of {line_text(session_id)}: {verb}d")

            run(go())

    _change("pause", "Stop a schedule firing (NAME: the session's only one if left out).")
    _change("resume", "Let a paused schedule fire again.")
    _change("trigger", "Fire a schedule once, now.")
    _change("delete", "Remove a schedule; the messages it sent stay.")
    return schedule


async def _connect() -> Any:
    from sessionflow.client.client import SessionClient

    return await SessionClient.connect()


def _full(owner: str | None, session_id: str) -> str:
    from sessionflow.ids import tenant_session_id

    return tenant_session_id(owner, session_id)


async def _only_schedule(session: Any) -> str:
    from sessionflow.errors import InvalidInput, ScheduleNotFound

    rows = await session.schedules()
    if len(rows) == 1:
        name: str = rows[0].name
        return name
    if not rows:
        raise ScheduleNotFound(f"session {session.id!r} has no schedule")
    names = ", ".join(r.name for r in rows)
    raise InvalidInput(f"session {session.id!r} has several schedules ({names}): name one")
