"""Running a command: its coroutine to the end, and its failure in one line."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable
from typing import NoReturn, TypeVar

import click

from sessionflow.errors import InvalidInput, SessionflowError

T = TypeVar("T")


def run(coro: Awaitable[T]) -> NoReturn:
    """Run a command's coroutine to completion, then exit the process at once.

    Exit status: 0 when done, 2 for bad input (a setting, an argument), 1 for other
    failures, each told in one line (a server that cannot listen is an `OSError`:
    `gateway.main` turns uvicorn's exit into one); 130 after Ctrl-C.

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
    except OSError as err:  # a server that cannot listen, say
        click.echo(f"Error: {body_text(str(err))}", err=True)
        code = 1
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(err: Exception, code: int = 2) -> NoReturn:
    """Say what is wrong in one line and exit (2: bad input)."""
    click.echo(f"Error: {err}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
