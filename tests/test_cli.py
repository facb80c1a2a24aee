"""The command line as a new user meets it: the demo, and `dev` stopping and resuming."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sessionflow.cli.localstack import LocalStack, StackConfig, free_port, port_open
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import TurnStatus
from tests.processes import REPO

pytestmark = pytest.mark.slow

PRIMES = "The first ten primes: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29"


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


async def test_demo_streams_the_answer_and_prints_the_ui_link(
    stack: LocalStack, tmp_path: Path
) -> None:
    env = cli_env(
        TEMPORAL_ADDRESS=stack.config.temporal_address,
        REDIS_URL=stack.config.redis_url,
        SESSIONFLOW_DATA_DIR=str(tmp_path / "data"),
        TEMPORAL_UI_URL="http://ui.example:8233",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessionflow", "demo", "--no-keep",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    out = stdout.decode()
    assert proc.returncode == 0, stderr.decode()
    assert f"Using the running stack at {stack.config.temporal_address}" in out
    assert "▶ Bash: ls -la" in out
    assert "▶ Bash: python3 primes.py" in out
    # Once as the tool's output, once quoted in the model's answer.
    assert out.count(PRIMES) == 2
    assert "Turn finished" in out
    assert "http://ui.example:8233/namespaces/default/workflows/session%3Ademo%3Ademo-" in out
    assert '"event"' not in out  # logs stay off the answer


GATEWAY_PORT: dict[Path, int] = {}


def start_dev(data_dir: Path, config: StackConfig, log: Path) -> subprocess.Popen[bytes]:
    GATEWAY_PORT.setdefault(data_dir, free_port())
    command = [
        sys.executable, "-m", "sessionflow", "dev", "--data-dir", str(data_dir),
        "--temporal-port", str(config.temporal_port), "--ui-port", str(config.ui_port),
        "--redis-port", str(config.redis_port), "--gateway-port", str(GATEWAY_PORT[data_dir]),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, env=cli_env(), cwd=REPO, stdout=out, stderr=out)


async def wait_for_text(log: Path, text: str, proc: subprocess.Popen[bytes], count: int) -> None:
    deadline = time.monotonic() + 90
    while log.read_text().count(text) < count:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.1)


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=60)


async def test_dev_stops_cleanly_on_ctrl_c_and_resumes_sessions(tmp_path: Path) -> None:
    from sessionflow.client.client import SessionClient

    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    config = StackConfig.on_free_ports(data_dir, ui=True)
    dev = start_dev(data_dir, config, log)
    try:
        await wait_for_text(log, "Press Ctrl-C to stop.", dev, 1)
        text = log.read_text()
        assert f"Temporal UI   {config.ui_url}" in text
        # The Redis password is never printed; the development key (ours) is.
        assert f"Redis         redis://:***@127.0.0.1:{config.redis_port}/0" in text
        assert config.redis_password not in text
        assert "API keys: sf-dev-key (tenant dev)" in text
        assert "Sandboxes     bubblewrap: user, pid, net" in text
        gateway = f"http://127.0.0.1:{GATEWAY_PORT[data_dir]}"
        assert f"Gateway       {gateway}" in text
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{gateway}/v1/sessions/none/history",
                headers={"authorization": "Bearer sf-dev-key"},
            )
            assert response.status_code == 404  # authorised (dev key), no such session
        temporal = await connect_temporal(config.temporal_address)
        redis = await connect_redis(config.redis_url)
        client = SessionClient(temporal, redis)
        session = client.session("resume-me", agent="demo")
        result = await session.send("hello")
        assert (await asyncio.wait_for(result.outcome, 60)).status is TurnStatus.FINISHED
        entries = await redis.xlen(f"sf:{{{session.workflow_id}}}:chunks")
        await redis.aclose()
    finally:
        code = interrupt(dev)
    assert code == 0, log.read_text()
    for port in (config.temporal_port, config.ui_port, config.redis_port, GATEWAY_PORT[data_dir]):
        assert not port_open(config.host, port), f"port {port} still open after Ctrl-C"

    dev = start_dev(data_dir, config, log)
    try:
        await wait_for_text(log, "Press Ctrl-C to stop.", dev, 2)
        temporal = await connect_temporal(config.temporal_address)
        redis = await connect_redis(config.redis_url)
        client = SessionClient(temporal, redis)
        session = client.session("resume-me", agent="demo")
        history = await session.history()
        assert [m.role.value for m in history] == ["user", "assistant"]
        assert PRIMES in history[1].text()
        # Redis persisted the stream too (append-only file).
        assert await redis.xlen(f"sf:{{{session.workflow_id}}}:chunks") == entries
        second = await session.send("and again")
        assert (await asyncio.wait_for(second.outcome, 60)).status is TurnStatus.FINISHED
        assert len(await session.history()) == 4
        await redis.aclose()
    finally:
        assert interrupt(dev) == 0, log.read_text()
