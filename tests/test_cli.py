"""The command line as a new user meets it: the demo, and `dev` stopping and resuming,
ready only when every service answers, failing loudly, and never outlived by its
servers, even when SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
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


def start_dev(
    data_dir: Path, config: StackConfig, log: Path, gateway_port: int | None = None
) -> subprocess.Popen[bytes]:
    GATEWAY_PORT.setdefault(data_dir, free_port())
    command = [
        sys.executable, "-m", "sessionflow", "dev", "--data-dir", str(data_dir),
        "--temporal-port", str(config.temporal_port), "--ui-port", str(config.ui_port),
        "--redis-port", str(config.redis_port),
        "--gateway-port", str(gateway_port or GATEWAY_PORT[data_dir]),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, env=cli_env(), cwd=REPO, stdout=out, stderr=out)


READY = "Press Ctrl-C to stop."


async def wait_for_text(log: Path, text: str, proc: subprocess.Popen[bytes], count: int) -> None:
    deadline = time.monotonic() + 90
    while log.read_text().count(text) < count:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.02)


async def wait_ready_and_probe(log: Path, proc: subprocess.Popen[bytes], count: int) -> None:
    """Wait for dev's ready line, then at once (no retry) ask its gateway: it must answer."""
    await wait_for_text(log, READY, proc, count)
    port = re.findall(r"Gateway +http://127.0.0.1:(\d+)", log.read_text())[-1]
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{port}/healthz")
    assert answer.status_code == 200, answer.text


def children(pid: int) -> dict[int, str]:
    """The live children of `pid`: pid -> command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != b"Z":
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            found[int(stat.parent.name)] = cmdline.decode(errors="replace")
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


async def all_gone(pids: Iterable[int], within: float) -> float:
    """Seconds until none of `pids` lives; fails past `within`."""
    started = time.monotonic()
    while any(alive(pid) for pid in pids):
        assert time.monotonic() - started < within, {p: alive(p) for p in pids}
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=60)


async def test_dev_stops_cleanly_on_ctrl_c_and_resumes_sessions(tmp_path: Path) -> None:
    from sessionflow.client.client import SessionClient

    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    config = StackConfig.on_free_ports(data_dir, ui=True)
    dev = start_dev(data_dir, config, log)
    try:
        await wait_ready_and_probe(log, dev, 1)
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
        session = client.agent("demo").session("resume-me")
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
        await wait_ready_and_probe(log, dev, 2)
        temporal = await connect_temporal(config.temporal_address)
        redis = await connect_redis(config.redis_url)
        client = SessionClient(temporal, redis)
        session = client.agent("demo").session("resume-me")
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


async def test_dev_killed_takes_its_servers_with_it_and_the_next_dev_starts(
    tmp_path: Path,
) -> None:
    from sessionflow.client.client import SessionClient

    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    config = StackConfig.on_free_ports(data_dir, ui=True)
    dev = start_dev(data_dir, config, log)
    try:
        await wait_ready_and_probe(log, dev, 1)
        servers = children(dev.pid)
        names = " ".join(servers.values())
        assert "temporal server start-dev" in names and "watchdog.py" in names, servers
        assert len(servers) == 3, servers  # the guard, Temporal and Redis
        temporal = await connect_temporal(config.temporal_address)
        redis = await connect_redis(config.redis_url)
        session = SessionClient(temporal, redis).agent("demo").session("before-the-kill")
        result = await session.send("hello")
        assert (await asyncio.wait_for(result.outcome, 60)).status is TurnStatus.FINISHED
        await redis.aclose()
    finally:
        dev.kill()
        dev.wait()
    took = await all_gone(servers, within=15)
    for port in (config.temporal_port, config.ui_port, config.redis_port):
        assert not port_open(config.host, port), f"port {port} still open {took:.1f}s after"

    dev = start_dev(data_dir, config, log)
    try:
        await wait_ready_and_probe(log, dev, 2)
        assert "left running" not in log.read_text()  # nothing was: they died with dev
        temporal = await connect_temporal(config.temporal_address)
        redis = await connect_redis(config.redis_url)
        session = SessionClient(temporal, redis).agent("demo").session("before-the-kill")
        assert [m.role.value for m in await session.history()] == ["user", "assistant"]
        await redis.aclose()
    finally:
        assert interrupt(dev) == 0, log.read_text()


async def test_dev_stops_servers_a_killed_dev_left_running_and_starts(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    config = StackConfig.on_free_ports(data_dir, ui=True)
    dev = start_dev(data_dir, config, log)
    try:
        await wait_ready_and_probe(log, dev, 1)
        servers = children(dev.pid)
    finally:
        # The guard first, then dev: as if both were killed at once (an OOM killer, a
        # `kill -9` of the process group), so nothing stops the servers.
        (guard,) = [pid for pid, cmd in servers.items() if "watchdog.py" in cmd]
        os.kill(guard, signal.SIGKILL)
        dev.kill()
        dev.wait()
    left = [pid for pid in servers if pid != guard]
    await asyncio.sleep(1)
    assert all(alive(pid) for pid in left), "the servers died anyway: nothing to test"

    dev = start_dev(data_dir, config, log)
    try:
        await wait_ready_and_probe(log, dev, 2)
        text = log.read_text()
        assert "left running on" in text and "by an earlier stack" in text, text
        assert not any(alive(pid) for pid in left)
    finally:
        assert interrupt(dev) == 0, log.read_text()
    await all_gone(children(dev.pid), within=15)


async def test_dev_refuses_a_taken_gateway_port_naming_it(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    config = StackConfig.on_free_ports(data_dir, ui=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = start_dev(data_dir, config, log, gateway_port=port)
        code = dev.wait(60)
    lines = log.read_text().strip().splitlines()
    assert code == 1, log.read_text()
    assert lines[-1].startswith(f"Error: port {port} on 127.0.0.1 (for the gateway) is already"), (
        lines
    )
    assert lines[-1].endswith("choose another with --gateway-port"), lines
    assert READY not in log.read_text()
    assert not (data_dir / "temporal.db").exists(), "servers were started anyway"


async def test_a_server_that_dies_stops_dev_with_its_error(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "dev.log"
    config = StackConfig.on_free_ports(data_dir, ui=True)
    dev = start_dev(data_dir, config, log)
    try:
        await wait_ready_and_probe(log, dev, 1)
        servers = children(dev.pid)
        (redis,) = [pid for pid, cmd in servers.items() if re.search(r"(redis|valkey)-server", cmd)]
        os.kill(redis, signal.SIGKILL)
        code = dev.wait(60)
    finally:
        if dev.poll() is None:
            interrupt(dev)
    lines = log.read_text().strip().splitlines()
    assert code == 1, log.read_text()
    assert lines[-1].startswith("Error: Temporal or Redis failed: redis exited unexpectedly"), lines
    await all_gone(servers, within=15)
