"""A client program that exits right after a Temporal call exits cleanly.

The SDK hands each call's answer to the event loop from a native thread that holds the
GIL; when that thread loses the GIL mid-callback and the program ends, finalization cut
it off and the process aborted (CI caught the README's client example exiting -6).
The child below widens that window on purpose: its loop's `call_soon_threadsafe`, which
the native thread calls, sleeps after scheduling the answer, exactly where a preempted
callback waits for the GIL. Without Sessionflow's exit handler the callback never
finishes: the program crashes (SIGSEGV or SIGABRT) as the thread wakes in finalization,
or ends before it wakes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sessionflow.cli.localstack import LocalStack

PROGRAM = """
import asyncio, os, threading, time
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

MAIN = threading.get_ident()
armed = False
original = asyncio.BaseEventLoop.call_soon_threadsafe

def call_soon_threadsafe(self, *args, **kwargs):
    handle = original(self, *args, **kwargs)
    if armed and threading.get_ident() != MAIN:
        time.sleep(0.3)  # the answer is on its way; this thread waits for the GIL
        print("CALLBACK FINISHED", flush=True)
    return handle

asyncio.BaseEventLoop.call_soon_threadsafe = call_soon_threadsafe

async def main():
    global armed
    from sessionflow.connections import connect_temporal
    client = await connect_temporal(os.environ["TEMPORAL_ADDRESS"])
    armed = True
    await client.workflow_service.get_system_info(GetSystemInfoRequest())
    print("ANSWERED", flush=True)

asyncio.run(main())
"""


async def test_a_program_that_exits_mid_callback_exits_cleanly(
    stack: LocalStack, tmp_path: Path
) -> None:
    script = tmp_path / "exits_at_once.py"
    script.write_text(PROGRAM)
    env = os.environ | {"TEMPORAL_ADDRESS": stack.config.temporal_address}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    text = output.decode()
    assert "ANSWERED" in text, text
    assert "CALLBACK FINISHED" in text, text  # the exit handler waited for it
    assert proc.returncode == 0, text
