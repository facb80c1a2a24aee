"""A model that writes terminal control sequences cannot drive the terminal of whoever
reads its session with the CLI: `history`, `inspect` and `tail`, on a real terminal
(a pty, where click keeps escape sequences), print each one as visible text.

The sequences: `ESC]0;` (window title), `ESC]52;c;` (set the clipboard), `ESC[2J`
(clear the screen), `ESC[8m` (hide what follows), an 8-bit CSI (C1), BEL and DEL, a
carriage return, and a newline inside a tool's name that would forge a line of the
CLI's own. They come from the model's text, its reasoning, a tool's name and input,
and the real output of a command it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import sys

import pytest

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import LocalStack
from sessionflow.cli.safe_text import body_text, json_text, line_text
from sessionflow.contract import TurnStatus
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from tests.conftest import StartWorker
from tests.processes import REPO
from tests.test_cli import cli_env

pytestmark = pytest.mark.slow

HOSTILE = (
    "title\x1b]0;pwned-title\x07 clip\x1b]52;c;cm0gLXJmIH4=\x07 "
    "clear\x1b[2J hide\x1b[8m secret c1\x9b31m del\x7f cr\roverwrite"
)
FORGED = "\x1b[2JForged line"
LAST = "All done."
hostile_agent = agent(
    "hostile",
    model=Script(
        name="hostile",
        delay=0,
        turns=[
            [
                ScriptStep(
                    reasoning=f"thinking {HOSTILE}",
                    text=f"Here: {HOSTILE}",
                    tool_calls=[
                        ScriptedToolCall(
                            tool="Bash",
                            input={"command": "printf 'out\\033]52;c;cHduZWQ=\\007\\033[2J'"},
                        ),
                        ScriptedToolCall(tool=f"Bash\n{FORGED}", input={"x": HOSTILE}),
                    ],
                ),
                ScriptStep(text=f"{HOSTILE}\n{LAST}"),
            ]
        ],
    ),
    tools=[bash_tool()],
)

# What the CLI itself writes on a terminal: SGR styles (bold, dim, colours, resets).
OURS = re.compile(rb"\x1b\[(?:(?:0|1|2|3|22|23|31|33|35|36|39)(?:;|(?=m)))*m")


def assert_inert(output: bytes, what: str) -> None:
    """Nothing the model wrote reached the terminal as a control sequence."""
    text = output.decode("utf-8", errors="replace")
    rest = OURS.sub(b"", output)
    assert b"\x1b" not in rest, (what, text)
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", rest.replace(b"\r\n", b"\n")), (
        what,
        text,
    )
    assert not re.search("[\x80-\x9f]", text), (what, text)  # C1, UTF-8 encoded
    # No line of the output begins with the forged text.
    assert not re.search(r"(?m)^Forged line", text), (what, text)


async def on_terminal(
    stack: LocalStack, task_queue: str, *args: str, until: str | None = None
) -> bytes:
    """The CLI's output with a pty as its terminal; with `until`, Ctrl-C once that
    text has been printed (`tail` follows forever)."""
    env = cli_env(
        TEMPORAL_ADDRESS=stack.config.temporal_address,
        REDIS_URL=stack.config.redis_url,
        SESSIONFLOW_TASK_QUEUE=task_queue,
        SESSIONFLOW_PAYLOAD_STORE=stack.config.payload_store,
    )
    master, terminal = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessionflow", *args, env=env, cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=terminal, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    loop = asyncio.get_running_loop()
    output = bytearray()
    try:
        async with asyncio.timeout(60):
            while True:
                try:
                    chunk = await loop.run_in_executor(None, os.read, master, 65536)
                except OSError:  # EIO: every writer of the terminal has gone
                    break
                if not chunk:
                    break
                output += chunk
                if until is not None and until.encode() in output:
                    proc.send_signal(signal.SIGINT)
                    until = None
            await proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        os.close(master)
    return bytes(output)


def test_the_escapes_are_visible_text() -> None:
    assert line_text("a\nb\x1b]0;x\x07\x9b\u202e") == "a\\x0ab\\x1b]0;x\\x07\\x9b\\u202e"
    assert body_text("a\n\tb\x1b[2J\r") == "a\n\tb\\x1b[2J\\x0d"
    assert json_text('{"t": "\x9b\x7f"}') == '{"t": "\\u009b\\u007f"}'


async def test_history_inspect_and_tail_print_no_control_sequences(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str
) -> None:
    client = await start_worker([hostile_agent])
    session = client.agent("hostile").session(unique_id)
    result = await session.send(f"user says {HOSTILE}")
    assert (await result.outcome).status is TurnStatus.FINISHED
    history = await session.history()
    tools = history[-1].tool_parts()
    # The attack is real: the stored message holds the raw sequences.
    assert "\x1b]52;c;" in tools[0].output["stdout"] and tools[1].tool_name == f"Bash\n{FORGED}"

    shown = await on_terminal(stack, task_queue, "history", unique_id, "--agent", "hostile")
    assert_inert(shown, "history")
    text = shown.decode()
    assert "\\x1b]0;pwned-title\\x07" in text and "\\x1b]52;c;" in text  # shown, not obeyed
    assert "▶ Bash\\x0a\\x1b[2JForged line" in text
    assert LAST in text

    json_lines = await on_terminal(
        stack, task_queue, "history", unique_id, "--agent", "hostile", "--json"
    )
    assert_inert(json_lines, "history --json")

    inspected = await on_terminal(stack, task_queue, "inspect", unique_id, "--agent", "hostile")
    assert_inert(inspected, "inspect")
    assert "Bash\\x0a\\x1b[2JForged line (output-error)" in inspected.decode()

    for extra in ((), ("--json",)):
        tailed = await on_terminal(
            stack,
            task_queue,
            "tail",
            session.workflow_id,
            *extra,
            until='"finish"' if extra else LAST,
        )
        assert_inert(tailed, f"tail {extra}")
        assert (LAST if not extra else '"finish"') in tailed.decode()
