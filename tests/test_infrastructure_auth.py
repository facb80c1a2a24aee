"""The infrastructure against an attacker on the network or reading logs: the local
stack's Redis requires a password, Temporal connections take TLS, mTLS and API keys,
and no credential reaches a log line or the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from temporalio.client import Client
from temporalio.service import TLSConfig

from sessionflow.cli.localstack import LocalStack, StackConfig, free_port, redis_password
from sessionflow.config import LOCAL_REDIS_PASSWORD_FILE, Settings
from sessionflow.connections import connect_redis, connect_temporal, temporal_tls
from sessionflow.errors import ConnectionFailed, InvalidInput
from sessionflow.logs import redact_text, redact_url
from tests.processes import REPO, WorkerProcess

# -- the local stack's Redis ----------------------------------------------------------


def raw_command(port: int, command: bytes) -> bytes:
    """One inline command on a fresh socket, as any local process could send it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(4096)


async def test_the_stacks_redis_refuses_clients_without_the_password(stack: LocalStack) -> None:
    config = stack.config
    assert raw_command(config.redis_port, b"PING").startswith(b"-NOAUTH")
    assert raw_command(config.redis_port, b"KEYS *").startswith(b"-NOAUTH")
    assert raw_command(config.redis_port, b"AUTH not-the-password").startswith(b"-WRONGPASS")

    anonymous = Redis(host=config.host, port=config.redis_port)
    with pytest.raises((AuthenticationError, ResponseError)):
        await anonymous.ping()
    await anonymous.aclose()

    # The URL every user of the stack takes carries the password, and works.
    assert config.redis_url == (f"redis://:{config.redis_password}@127.0.0.1:{config.redis_port}/0")
    redis = await connect_redis(config.redis_url)
    assert await redis.ping() is True
    await redis.aclose()

    # A wrong password fails with advice, and the message does not repeat it.
    wrong = config.redis_url.replace(config.redis_password, "guessed-password-123")
    with pytest.raises(ConnectionFailed) as failed:
        await connect_redis(wrong)
    assert "guessed-password-123" not in str(failed.value)
    assert f"redis://:***@127.0.0.1:{config.redis_port}/0" in str(failed.value)


async def test_the_password_is_private_to_its_data_directory_and_kept(stack: LocalStack) -> None:
    config = stack.config
    path = config.data_dir / LOCAL_REDIS_PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == config.redis_password
    assert len(config.redis_password) >= 32
    # Reused: another config on the same directory (a restarted `dev`) gets the same.
    assert StackConfig(data_dir=config.data_dir).redis_password == config.redis_password
    # The server got it from a private file, not its command line (`ps` shows that).
    pid = stack.pid("redis")
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert config.redis_password.encode() not in cmdline
    assert stat.S_IMODE((config.data_dir / "redis" / "auth.conf").stat().st_mode) == 0o600


def test_each_data_directory_gets_its_own_password_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    # Many processes asking at once (a test and the `dev` it starts) agree on one.
    with ThreadPoolExecutor(8) as pool:
        made = set(pool.map(lambda _: redis_password(first), range(32)))
    assert len(made) == 1
    assert redis_password(second) not in made
    assert sorted(p.name for p in first.iterdir()) == [LOCAL_REDIS_PASSWORD_FILE]  # no drafts
    # A copy that lost its mode is tightened again.
    (first / LOCAL_REDIS_PASSWORD_FILE).chmod(0o644)
    assert redis_password(first) in made
    assert stat.S_IMODE((first / LOCAL_REDIS_PASSWORD_FILE).stat().st_mode) == 0o600


async def test_a_restarted_stack_resumes_with_the_same_password(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports(tmp_path / "stack")
    async with LocalStack(config):
        redis = await connect_redis(config.redis_url)
        await redis.set("kept", "yes")
        await redis.aclose()
    again = StackConfig.on_free_ports(tmp_path / "stack")
    assert again.redis_url.replace(str(again.redis_port), "P") == config.redis_url.replace(
        str(config.redis_port), "P"
    )
    async with LocalStack(again):
        redis = await connect_redis(again.redis_url)
        assert await redis.get("kept") == b"yes"  # the append-only file, behind the password
        await redis.aclose()


def test_settings_find_the_local_password_unless_redis_url_is_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"SESSIONFLOW_DATA_DIR": str(data)}
    assert Settings.from_env(env).redis_url == "redis://127.0.0.1:6379/0"
    password = redis_password(data)
    assert Settings.from_env(env).redis_url == f"redis://:{password}@127.0.0.1:6379/0"
    chosen = {**env, "REDIS_URL": "redis://:other@redis.internal:6379/1"}
    assert Settings.from_env(chosen).redis_url == "redis://:other@redis.internal:6379/1"


def test_pointing_settings_at_the_local_stack_drops_remote_temporal_credentials(
    tmp_path: Path,
) -> None:
    remote = Settings.from_env(
        {"TEMPORAL_API_KEY": "cloud-key-123456", "TEMPORAL_TLS_CA": "/etc/ca.pem"}
    )
    local = StackConfig.on_free_ports(tmp_path).point(remote)
    assert local.temporal_api_key is None and local.temporal_tls_ca is None
    assert temporal_tls(local) is None  # the dev server speaks plaintext


# -- Temporal over TLS, mTLS and API keys ----------------------------------------------


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _sign(directory: Path, name: str, ca: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=directory)  # fmt: skip
    (directory / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=directory)  # fmt: skip


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A self-signed CA, a server certificate for `temporal.test`, a client certificate
    for mTLS, and an unrelated CA."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("certs")
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _sign(directory, "server", "ca", "basicConstraints=CA:FALSE\n"
          "subjectAltName=DNS:temporal.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")  # fmt: skip
    _sign(directory, "client", "ca",
          "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")  # fmt: skip
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )


def test_without_tls_settings_temporal_is_plaintext() -> None:
    assert temporal_tls(Settings.from_env({})) is None
    assert temporal_tls(Settings.from_env({"TEMPORAL_TLS": "off"})) is None


def test_an_api_key_implies_tls_with_the_systems_roots() -> None:
    settings = Settings.from_env({"TEMPORAL_API_KEY": "tc-api-key-0123456789"})
    assert settings.temporal_api_key == "tc-api-key-0123456789"
    assert temporal_tls(settings) == TLSConfig()
    assert "tc-api-key-0123456789" not in repr(settings)
    with pytest.raises(InvalidInput, match="TEMPORAL_API_KEY is only sent over TLS"):
        temporal_tls(settings.model_copy(update={"temporal_tls": False}))


def test_tls_on_alone_uses_the_systems_roots() -> None:
    assert temporal_tls(Settings.from_env({"TEMPORAL_TLS": "on"})) == TLSConfig()
    assert temporal_tls(Settings.from_env({"TEMPORAL_TLS": "true"})) == TLSConfig()
    with pytest.raises(ValueError, match="TEMPORAL_TLS must be on or off, got 'maybe'"):
        Settings.from_env({"TEMPORAL_TLS": "maybe"})


def test_mtls_settings_become_the_tls_config(certs: Certs) -> None:
    settings = Settings.from_env(
        {
            "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
            "TEMPORAL_TLS_CA": str(certs.ca),
            "TEMPORAL_TLS_CERT": str(certs.client_cert),
            "TEMPORAL_TLS_KEY": str(certs.client_key),
            "TEMPORAL_TLS_SERVER_NAME": "temporal.test",
        }
    )
    assert settings.temporal_tls is None  # unset: on because files are given
    assert temporal_tls(settings) == TLSConfig(
        server_root_ca_cert=certs.ca.read_bytes(),
        domain="temporal.test",
        client_cert=certs.client_cert.read_bytes(),
        client_private_key=certs.client_key.read_bytes(),
    )


def test_bad_tls_settings_fail_with_one_line(certs: Certs, tmp_path: Path) -> None:
    missing, not_pem = tmp_path / "nope.pem", certs.ca.parent / "server.ext"
    cert = str(certs.client_cert)
    cases = [
        ({"TEMPORAL_TLS_CERT": cert}, "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together"),
        (
            {"TEMPORAL_TLS_CA": str(missing)},
            f"TEMPORAL_TLS_CA={missing} cannot be read (No such file or directory)",
        ),
        (
            {"TEMPORAL_TLS_CERT": cert, "TEMPORAL_TLS_KEY": str(missing)},
            f"TEMPORAL_TLS_KEY={missing} cannot be read",
        ),
        ({"TEMPORAL_TLS_CA": str(not_pem)}, f"TEMPORAL_TLS_CA={not_pem} is not a PEM file"),
        (
            {"TEMPORAL_TLS": "off", "TEMPORAL_TLS_CA": str(certs.ca)},
            "TEMPORAL_TLS=off contradicts TEMPORAL_TLS_CA",
        ),
    ]
    for env, expected in cases:
        with pytest.raises(InvalidInput) as failed:
            temporal_tls(Settings.from_env(env))
        message = str(failed.value)
        assert "\n" not in message
        assert message.startswith(expected), message


async def test_connect_temporal_hands_tls_and_the_api_key_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch, certs: Certs
) -> None:
    seen: dict[str, Any] = {}

    async def fake_connect(target: str, **kwargs: Any) -> str:
        seen.update(kwargs, target=target)
        return "client"

    monkeypatch.setattr(Client, "connect", fake_connect)
    settings = Settings.from_env(
        {"TEMPORAL_API_KEY": "tc-api-key-abcdef", "TEMPORAL_TLS_CA": str(certs.ca)}
    )
    await connect_temporal("ns.acct.tmprl.cloud:7233", "ns.acct", settings=settings)
    assert seen["target"] == "ns.acct.tmprl.cloud:7233" and seen["namespace"] == "ns.acct"
    assert seen["api_key"] == "tc-api-key-abcdef"
    assert seen["tls"] == TLSConfig(server_root_ca_cert=certs.ca.read_bytes())

    await connect_temporal("127.0.0.1:7233")  # no settings: the local stack, plaintext
    assert seen["tls"] is False and seen["api_key"] is None


@pytest.fixture
async def tls_frontend(stack: LocalStack, certs: Certs) -> AsyncIterator[str]:
    """A TLS-terminating proxy in front of the dev server that requires a client
    certificate signed by the test CA (as an mTLS Temporal frontend does)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    context.load_verify_locations(certs.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            stack.config.host, stack.config.temporal_port
        )
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            running = asyncio.ensure_future(task)
            pipes.add(running)
            running.add_done_callback(pipes.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.close()
    for task in list(pipes):
        task.cancel()


async def test_a_real_mtls_connection_through_a_tls_frontend(
    tls_frontend: str, certs: Certs
) -> None:
    env = {
        "TEMPORAL_ADDRESS": tls_frontend,
        "TEMPORAL_TLS_CA": str(certs.ca),
        "TEMPORAL_TLS_CERT": str(certs.client_cert),
        "TEMPORAL_TLS_KEY": str(certs.client_key),
        "TEMPORAL_TLS_SERVER_NAME": "temporal.test",
    }
    settings = Settings.from_env(env)
    client = await connect_temporal(tls_frontend, settings=settings)
    assert (await client.count_workflows()).count >= 0

    # Without the client certificate the frontend hangs up; with another CA the client
    # does not trust the server; plaintext to a TLS port gets nowhere either.
    for changed in (
        {"TEMPORAL_TLS_CERT": "", "TEMPORAL_TLS_KEY": ""},
        {"TEMPORAL_TLS_CA": str(certs.other_ca)},
        {"TEMPORAL_TLS_SERVER_NAME": "impostor.test"},
    ):
        bad = Settings.from_env({**env, **changed})
        with pytest.raises(ConnectionFailed, match="over TLS"):
            await asyncio.wait_for(connect_temporal(tls_frontend, settings=bad), 60)
    with pytest.raises(ConnectionFailed):
        await asyncio.wait_for(connect_temporal(tls_frontend), 60)


# -- no credentials in logs or on the terminal -----------------------------------------

LOGGING_SCRIPT = """
import logging, sys
import structlog
from sessionflow.logs import configure_logging, remember_secret
configure_logging("info", sys.argv[1])
remember_secret("tenant-key-9f8e7d6c")
log = structlog.get_logger("check")
log.info(
    "worker started",
    redis="redis://:s3cret-redis-pw@redis.internal:6379/0",
    api_key="sk-ant-api-key-000111",
    temporal_api_key="tc-temporal-key-222333",
    headers={"Authorization": "Bearer bearer-token-444555", "accept": "json"},
    tokens=812,
    note="connect with REDIS_URL=rediss://default:s3cret-redis-pw@cache:6380 please",
)
log.info("the gateway saw tenant-key-9f8e7d6c in a header")
logging.getLogger("temporalio").warning(
    "retrying redis://:s3cret-redis-pw@redis.internal:6379/0 password=hunter2-hunter2"
)
try:
    raise ConnectionError("lost redis://:s3cret-redis-pw@redis.internal:6379/0")
except ConnectionError:
    log.exception("stream failed")
"""
LOGGED_SECRETS = (
    "s3cret-redis-pw", "sk-ant-api-key-000111", "tc-temporal-key-222333",
    "bearer-token-444555", "tenant-key-9f8e7d6c", "hunter2-hunter2",
)  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_log_lines_carry_no_credentials(fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT, fmt],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    out = done.stderr
    for secret in LOGGED_SECRETS:
        assert secret not in out, f"{secret} leaked in:\n{out}"
    # What is not secret is still there to read.
    assert "redis://:***@redis.internal:6379/0" in out
    assert "rediss://default:***@cache:6380" in out
    assert "812" in out and "worker started" in out and "stream failed" in out
    assert "ConnectionError" in out  # the traceback is kept, redacted
    if fmt == "json":
        first = json.loads(out.splitlines()[0])
        assert first["tokens"] == 812 and first["api_key"] == "***"
        assert first["headers"] == {"Authorization": "***", "accept": "json"}
        assert "exception" in json.loads(out.splitlines()[-1])


def test_redact_url_and_text() -> None:
    assert redact_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://user:p@ss@host/0") == "redis://user:***@host/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_text("max_tokens=8192 token=abc123") == "max_tokens=8192 token=***"


@pytest.mark.slow
async def test_the_worker_logs_the_redis_url_without_its_password(
    stack_config: StackConfig, task_queue: str, sandbox_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = WorkerProcess(
        stack_config, task_queue=task_queue, agents="tests.agents:context_agent",
        sandbox_root=sandbox_root, log=log,
    )  # fmt: skip
    await worker.start()
    assert worker.stop() == 0
    text = log.read_text()
    assert stack_config.redis_password not in text
    started = next(json.loads(line) for line in text.splitlines() if '"worker started"' in line)
    assert started["redis"] == f"redis://:***@127.0.0.1:{stack_config.redis_port}/0"


@pytest.fixture
def dev_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, StackConfig]]:
    config = StackConfig.on_free_ports(tmp_path / "data", ui=True)
    out = tmp_path / "dev.log"
    command = [
        sys.executable, "-m", "sessionflow", "dev", "--data-dir", str(config.data_dir),
        "--temporal-port", str(config.temporal_port), "--ui-port", str(config.ui_port),
        "--redis-port", str(config.redis_port), "--gateway-port", str(free_port()),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "SESSIONFLOW_API_KEYS": "longsecretkey1:acme"}
    with out.open("wb") as sink:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=sink, stderr=sink)
    yield proc, out, config
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
async def test_dev_prints_tenants_not_keys_and_no_redis_password(
    dev_process: tuple[subprocess.Popen[bytes], Path, StackConfig],
) -> None:
    proc, out, config = dev_process
    deadline = time.monotonic() + 90
    while "Press Ctrl-C to stop." not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        await asyncio.sleep(0.1)
    text = out.read_text()
    assert "longsecretkey1" not in text
    assert "sf-dev-key" not in text  # not accepted either, since keys are configured
    assert "tenants acme" in text
    password = config.redis_password
    assert password not in text
    assert f"Redis         redis://:***@127.0.0.1:{config.redis_port}/0" in text
    # The export line reads the password from its file when the shell runs it.
    export = next(line.strip() for line in text.splitlines() if "export " in line)
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c", f'{export}; printf %s "$REDIS_URL"', stdout=asyncio.subprocess.PIPE
    )
    printed, _ = await shell.communicate()
    assert printed.decode() == config.redis_url
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, out.read_text()
    assert "longsecretkey1" not in out.read_text() and password not in out.read_text()
