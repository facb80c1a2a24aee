"""A newcomer's first hour, through the `sessionflow` command as a new user runs it.

No PYTHONPATH and no settings beyond what the README tells: the user's own agent in a
package of the current directory, `dev` serving it or a worker of its own beside
`dev`, a second worker on the same host, and every bad setting told in one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sessionflow.cli.localstack import LocalStack, StackConfig, free_port, port_open
from sessionflow.client.client import SessionClient
from sessionflow.connections import connect_redis, connect_temporal
from sessionflow.contract import TurnStatus
from tests.processes import REPO

pytestmark = pytest.mark.slow

SESSIONFLOW = str(Path(sys.executable).parent / "sessionflow")
# What a user's shell would not have: our test set-up, and settings of another stack.
UNSET = ("PYTHONPATH", "PYTHONSAFEPATH", "REDIS_URL")


def newcomer_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in UNSET and not k.startswith(("SESSIONFLOW_", "TEMPORAL_"))
    }
    return {**env, "SESSIONFLOW_LOG_FORMAT": "json", **extra}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


async def run(*args: str, env: Mapping[str, str], cwd: Path = REPO, timeout: float = 120) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        SESSIONFLOW, *args, env=dict(env), cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def readme_block(mark: str) -> str:
    """The code block after `<!-- walk:<mark> -->` in the README, dedented."""
    readme = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- walk:{mark} -->\n\s*```\w*\n(.*?)\n\s*```", readme, re.S)
    assert found, f"README.md has no block after <!-- walk:{mark} -->"
    return textwrap.dedent(found.group(1))


def own_project(root: Path) -> Path:
    """A user's project: `mypackage` with the README's agent, and some broken modules."""
    package = root / "mypackage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "agents.py").write_text(readme_block("agents") + "\n")
    (package / "broken.py").write_text('"""Broken."""\nassistant = undefined_name\n')
    (package / "notagent.py").write_text("assistant = 42\n")
    (package / "needs.py").write_text("import not_installed_xyz  # noqa\n")
    return root


def log_events(text: str, event: str) -> list[dict[str, object]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                found.append(entry)
    return found


# -- settings: one line each --------------------------------------------------------

GATEWAY_KEYS = {"SESSIONFLOW_API_KEYS": "a-long-enough-key:acme"}
# (command, environment, what the one line must say)
BAD_SETTINGS: list[tuple[str, dict[str, str], str]] = [
    ("sessions", {"TEMPORAL_ADDRESS": "localhost"}, "TEMPORAL_ADDRESS must be host:port"),
    ("sessions", {"TEMPORAL_UI_URL": "ui:8233"}, "TEMPORAL_UI_URL must be an http"),
    ("sessions", {"SESSIONFLOW_TASK_QUEUE": "two words"}, "SESSIONFLOW_TASK_QUEUE must be"),
    ("worker", {"SESSIONFLOW_DEPLOYMENT": "my.app"}, "SESSIONFLOW_DEPLOYMENT must be 1-100"),
    ("worker", {"SESSIONFLOW_BUILD_ID": "v 2"}, "SESSIONFLOW_BUILD_ID must be 1-200"),
    (
        "worker",
        {"SESSIONFLOW_INTERRUPT_NOTICES": "sometimes"},
        "SESSIONFLOW_INTERRUPT_NOTICES must",
    ),
    ("sessions", {"REDIS_URL": "redis://:hunter2-secret@host:port/0"}, "REDIS_URL must look"),
    ("sessions", {"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL must look like redis://"),
    ("sessions", {"REDIS_URL": "redis://:hunter2-secret@h:6379/db"}, "REDIS_URL: the database"),
    ("sessions", {"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS must be on or off"),
    ("sessions", {"TEMPORAL_TLS_CA": "/nonexistent/ca.pem"}, "TEMPORAL_TLS_CA=/nonexistent"),
    ("sessions", {"SESSIONFLOW_STREAM_MAXLEN": "lots"}, "SESSIONFLOW_STREAM_MAXLEN must be a"),
    ("sessions", {"SESSIONFLOW_STREAM_TTL": "0"}, "SESSIONFLOW_STREAM_TTL must be a whole"),
    ("sessions", {"SESSIONFLOW_CONTEXT_TTL": "-5"}, "SESSIONFLOW_CONTEXT_TTL must be a"),
    ("sessions", {"SESSIONFLOW_METRICS_ADDRESS": "9464"}, "SESSIONFLOW_METRICS_ADDRESS must"),
    ("sessions", {"SESSIONFLOW_MAX_CONCURRENT_ACTIVITIES": "0"}, "_ACTIVITIES must be a whole"),
    ("sessions", {"SESSIONFLOW_MAX_CONCURRENT_WORKFLOW_TASKS": "1"}, "of at least 2, got '1'"),
    ("sessions", {"SESSIONFLOW_MAX_CACHED_WORKFLOWS": "-1"}, "MAX_CACHED_WORKFLOWS must be"),
    ("sessions", {"SESSIONFLOW_SANDBOX_ISOLATION": "docker"}, "_ISOLATION must be one of"),
    ("sessions", {"SESSIONFLOW_SANDBOX_NETWORK": "host"}, "_NETWORK must be one of none"),
    ("sessions", {"SESSIONFLOW_SANDBOX_UID": "0"}, "SESSIONFLOW_SANDBOX_UID must be a whole"),
    ("sessions", {"SESSIONFLOW_SANDBOX_MAX_PROCESSES": "many"}, "_MAX_PROCESSES must be"),
    ("sessions", {"SESSIONFLOW_SANDBOX_MAX_MEMORY_MB": "4G"}, "_MAX_MEMORY_MB must be"),
    ("sessions", {"SESSIONFLOW_SANDBOX_MAX_CPU_SECONDS": "x"}, "_MAX_CPU_SECONDS must be"),
    ("sessions", {"SESSIONFLOW_SANDBOX_MAX_FILE_MB": "-1"}, "_MAX_FILE_MB must be"),
    ("sessions", {"SESSIONFLOW_SANDBOX_MAX_OPEN_FILES": "0"}, "_MAX_OPEN_FILES must be"),
    ("sessions", {"SESSIONFLOW_SANDBOX_TMP_MB": "big"}, "SESSIONFLOW_SANDBOX_TMP_MB must be"),
    ("sessions", {"SESSIONFLOW_E2B_TIMEOUT": "forever"}, "SESSIONFLOW_E2B_TIMEOUT must be"),
    ("sessions", {"SESSIONFLOW_ANTHROPIC_MAX_TOKENS": "0"}, "_ANTHROPIC_MAX_TOKENS must be"),
    ("sessions", {"SESSIONFLOW_ANTHROPIC_THINKING_BUDGET": "100"}, "_THINKING_BUDGET must be"),
    ("sessions", {"SESSIONFLOW_LOG_FORMAT": "xml"}, "SESSIONFLOW_LOG_FORMAT must be one of"),
    ("sessions", {"SESSIONFLOW_LOG_LEVEL": "loud"}, "SESSIONFLOW_LOG_LEVEL must be one of"),
    ("sessions", {"SESSIONFLOW_PAYLOAD_STORE": "/var/payloads"}, "_PAYLOAD_STORE must be"),
    ("sessions", {"SESSIONFLOW_PAYLOAD_THRESHOLD": "big"}, "_PAYLOAD_THRESHOLD must be a"),
    ("sessions", {"SESSIONFLOW_TENANT": "acme:chat"}, "SESSIONFLOW_TENANT must be 1-64"),
    ("worker", {"SESSIONFLOW_SANDBOX": "xyz"}, "SESSIONFLOW_SANDBOX='xyz': not a registered"),
    ("dev", {"SESSIONFLOW_SANDBOX": "xyz"}, "SESSIONFLOW_SANDBOX='xyz': not a registered"),
    ("dev", {"SESSIONFLOW_PROVIDERS": "nope.models:P"}, "SESSIONFLOW_PROVIDERS entry"),
    ("worker", {"SESSIONFLOW_PROVIDERS": "nope.models:P"}, "SESSIONFLOW_PROVIDERS entry"),
    (
        "worker",
        {"SESSIONFLOW_PAYLOAD_STORE": "s3://bucket", "AWS_ENDPOINT_URL": "127.0.0.1:9000"},
        "must be an http:// or https:// URL",
    ),
    # The README's own shape used to end in a traceback: keys must be 8+ characters.
    ("dev", {"SESSIONFLOW_API_KEYS": "key1:tenant-a"}, "SESSIONFLOW_API_KEYS entries must"),
    ("gateway", {"SESSIONFLOW_API_KEYS": "key1:tenant-a"}, "SESSIONFLOW_API_KEYS entries must"),
    ("gateway", {}, "SESSIONFLOW_API_KEYS is not set"),
    ("gateway", {**GATEWAY_KEYS, "SESSIONFLOW_GATEWAY_PORT": "http"}, "_GATEWAY_PORT must be"),
    ("gateway", {**GATEWAY_KEYS, "SESSIONFLOW_MAX_BODY_BYTES": "1MB"}, "_MAX_BODY_BYTES must"),
    ("gateway", {**GATEWAY_KEYS, "SESSIONFLOW_SSE_HEARTBEAT": "often"}, "_SSE_HEARTBEAT must"),
    (
        "gateway",
        {**GATEWAY_KEYS, "SESSIONFLOW_GATEWAY_MAX_CONNECTIONS": "0"},
        "SESSIONFLOW_GATEWAY_MAX_CONNECTIONS must be a positive int",
    ),
    (
        "gateway",
        {**GATEWAY_KEYS, "SESSIONFLOW_DEFAULT_AGENT": "nobody"},
        "SESSIONFLOW_DEFAULT_AGENT=nobody is not among the agents served",
    ),
]


async def test_every_bad_setting_is_one_line_naming_it_and_exit_status_2(tmp_path: Path) -> None:
    # Nothing listens on port 1: a command that got past its settings would fail
    # differently (and dev would start servers).
    base = newcomer_env(TEMPORAL_ADDRESS="127.0.0.1:1", REDIS_URL="redis://127.0.0.1:1/0")
    slots = asyncio.Semaphore(3)

    async def attempt(command: str, env: dict[str, str], says: str) -> str | None:
        args = [command, "--data-dir", str(tmp_path / "dev")] if command == "dev" else [command]
        async with slots:
            ran = await run(*args, env={**base, **env}, cwd=tmp_path, timeout=60)
        lines = ran.stderr.strip().splitlines()
        ok = (
            ran.code == 2
            and len(lines) == 1
            and lines[0].startswith("Error: ")
            and says in lines[0]
            and "hunter2-secret" not in ran.stderr + ran.stdout
            and not ran.stdout.strip()
        )
        return None if ok else f"{command} {env}: exit {ran.code}, {ran.stderr!r} {ran.stdout!r}"

    failures = await asyncio.gather(*(attempt(*row) for row in BAD_SETTINGS))
    assert [f for f in failures if f] == []
    assert not (tmp_path / "dev").exists(), "dev started something despite a bad setting"


# -- --agents from the current directory ---------------------------------------------

BAD_AGENTS = [
    ("nopackage.agents:assistant", "no module 'nopackage.agents' in the current directory"),
    ("mypackage.agents:nobody", "module 'mypackage.agents' has no attribute 'nobody'"),
    ("mypackage.notagent:assistant", "assistant is a int, not an Agent"),
    ("mypackage.broken:assistant", "failed at mypackage/broken.py:2: NameError: name"),
    ("mypackage.needs:assistant", "importing 'mypackage.needs' failed"),
    ("mypackage.agents", "expected MODULE:ATTR"),
]


async def test_agents_that_cannot_be_loaded_are_one_line_each(tmp_path: Path) -> None:
    project = own_project(tmp_path / "project")
    env = newcomer_env(TEMPORAL_ADDRESS="127.0.0.1:1", **GATEWAY_KEYS)
    # Every way to fail through the worker; the gateway and dev load agents the same
    # way (`cli.commands._load`), shown with two of them each.
    tries = [("worker", *bad) for bad in BAD_AGENTS] + [
        (command, *BAD_AGENTS[i]) for command in ("gateway", "dev") for i in (0, 3)
    ]
    slots = asyncio.Semaphore(2)

    async def attempt(command: str, spec: str, says: str) -> None:
        async with slots:
            ran = await run(command, "--agents", spec, env=env, cwd=project, timeout=60)
        lines = ran.stderr.strip().splitlines()
        assert ran.code == 2, (command, spec, ran)
        assert len(lines) == 1 and says in lines[0], (command, spec, ran.stderr)
        assert lines[0].startswith(f"Error: --agents {spec}"), lines

    await asyncio.gather(*(attempt(*one) for one in tries))
    assert (
        "No module named 'not_installed_xyz'"
        in (
            await run("worker", "--agents", "mypackage.needs:assistant", env=env, cwd=project)
        ).stderr
    )
    assert not (project / ".sessionflow").exists()


class Worker:
    """`sessionflow worker` run as a user runs it, from their project directory (in a
    shell that first runs `shell_first`, when given)."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log: Path,
        shell_first: str | None = None,
    ) -> None:
        self.log = log
        command = [SESSIONFLOW, "worker", *args]
        if shell_first is not None:
            command = ["bash", "-c", f"{shell_first}\nexec {shlex.join(command)}"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=out)

    async def started(self, timeout: float = 90) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while not (found := log_events(self.log.read_text(), "worker started")):
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            await asyncio.sleep(0.1)
        return found[0]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


async def test_workers_of_two_agents_beside_each_other_on_one_host(
    stack: LocalStack, task_queue: str, tmp_path: Path, unique_id: str
) -> None:
    """The issue as reported: a second worker with a new agent on the same task queue
    and host. Its module loads from the current directory, its metrics take the next
    free port, and each agent's sessions go to its own worker."""
    project = own_project(tmp_path / "project")
    env = newcomer_env(
        TEMPORAL_ADDRESS=stack.config.temporal_address,
        REDIS_URL=stack.config.redis_url,
        SESSIONFLOW_TASK_QUEUE=task_queue,
        SESSIONFLOW_PAYLOAD_STORE=stack.config.payload_store,
        SESSIONFLOW_SANDBOX_ROOT=str(tmp_path / "sandboxes"),
    )  # SESSIONFLOW_METRICS_ADDRESS unset: both want 127.0.0.1:9464
    workers = [
        Worker([], env, project, tmp_path / "demo.log"),
        Worker(["--agents", "mypackage.agents:assistant"], env, project, tmp_path / "own.log"),
    ]
    try:
        demo, own = [await w.started() for w in workers]
        assert demo["task_queues"] == [f"{task_queue}.demo"]
        assert own["task_queues"] == [f"{task_queue}.assistant"]
        assert demo["metrics"] != own["metrics"], (demo, own)
        async with httpx.AsyncClient() as http:
            for started in (demo, own):
                answer = await http.get(str(started["metrics"]))
                assert answer.status_code == 200 and "temporal_" in answer.text

        temporal = await connect_temporal(stack.config.temporal_address)
        redis = await connect_redis(stack.config.redis_url)
        client = SessionClient(temporal, redis, task_queue=task_queue)
        sessions = [
            client.agent(("demo", "assistant")[i % 2]).session(f"{unique_id}-{i}") for i in range(6)
        ]
        results = [await s.send(f"turn {i}") for i, s in enumerate(sessions)]
        outcomes = await asyncio.wait_for(asyncio.gather(*(r.outcome for r in results)), 120)
        assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 6, outcomes
        assert (await sessions[1].history())[-1].text() == "You said: turn 1"
        await redis.aclose()
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.log.read_text()[-2000:] for w in workers]


async def test_a_configured_metrics_port_in_use_stops_the_worker_naming_it(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = newcomer_env(
            TEMPORAL_ADDRESS="127.0.0.1:1", SESSIONFLOW_METRICS_ADDRESS=f"127.0.0.1:{port}"
        )
        ran = await run("worker", env=env, cwd=tmp_path, timeout=60)
    lines = ran.stderr.strip().splitlines()
    assert ran.code == 1, ran
    assert lines[-1] == (
        f"Error: SESSIONFLOW_METRICS_ADDRESS=127.0.0.1:{port}: the port is in use (another "
        "worker on this host?); choose a free port, host:0 for any free one, or empty to "
        "turn metrics off"
    ), ran.stderr


# -- the README's walk: your own agent ------------------------------------------------


class Dev:
    """`sessionflow dev` in the user's project directory, on free ports."""

    def __init__(self, project: Path, args: list[str], log: Path) -> None:
        self.config = StackConfig.on_free_ports(project / ".sessionflow", ui=True)
        self.gateway_port = free_port()
        self.log = log
        ports = [
            "--temporal-port", str(self.config.temporal_port),
            "--ui-port", str(self.config.ui_port),
            "--redis-port", str(self.config.redis_port),
            "--gateway-port", str(self.gateway_port),
        ]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [SESSIONFLOW, *args, *ports], env=newcomer_env(), cwd=project,
                stdout=out, stderr=out,
            )  # fmt: skip

    async def ready(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while "Press Ctrl-C to stop." not in (text := self.log.read_text()):
            assert self.process.poll() is None, text
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.1)
        return text

    def export_line(self) -> str:
        """The `export ...` line dev prints for other shells."""
        found = re.search(r"^\s*(export TEMPORAL_ADDRESS=.*)$", self.log.read_text(), re.M)
        assert found, self.log.read_text()
        return found.group(1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)


async def in_shell(command: str, dev: Dev, project: Path) -> Ran:
    """`command` in a second shell where the user pasted dev's export line."""
    script = f"{dev.export_line()}\n{command}"
    env = newcomer_env(PATH=f"{Path(SESSIONFLOW).parent}:{os.environ['PATH']}")
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, env=env, cwd=project,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


async def test_the_readme_walk_your_own_agent_served_by_dev(tmp_path: Path) -> None:
    project = own_project(tmp_path / "project")
    command = readme_block("dev").split()
    assert command[:2] == ["sessionflow", "dev"]
    dev = Dev(project, command[1:], tmp_path / "dev.log")
    try:
        text = await dev.ready()
        assert "Agents        assistant" in text
        ran = await in_shell(readme_block("send"), dev, project)
        assert ran.code == 0, ran
        assert "You said: Hello there" in ran.stdout, ran
    finally:
        assert dev.stop() == 0, dev.log.read_text()[-3000:]
    for port in (dev.config.temporal_port, dev.config.redis_port, dev.gateway_port):
        assert not port_open("127.0.0.1", port)


async def test_the_readme_walk_your_own_agent_in_a_worker_beside_dev(tmp_path: Path) -> None:
    project = own_project(tmp_path / "project")
    dev = Dev(project, ["dev"], tmp_path / "dev.log")
    worker: Worker | None = None
    try:
        await dev.ready()
        (dev_started,) = log_events(dev.log.read_text(), "worker started")
        # The second shell: dev's export line, then the worker the README names.
        worker = Worker(
            ["--agents", "mypackage.agents:assistant"],
            newcomer_env(),
            project,
            tmp_path / "worker.log",
            shell_first=dev.export_line(),
        )
        own_started = await worker.started()
        assert own_started["metrics"] != dev_started["metrics"]
        assert own_started["task_queues"] == ["sessionflow.assistant"]
        # The same code as dev's worker: the same build, current in the deployment.
        assert own_started["build_id"] == dev_started["build_id"]
        assert own_started["current"] is True

        sends = [
            in_shell(f"sessionflow send chat-{i} 'message {i}' --agent {agent}", dev, project)
            for i, agent in enumerate(["demo", "assistant"] * 3)
        ]
        for i, ran in enumerate(await asyncio.gather(*sends)):
            assert ran.code == 0, ran
            if i % 2:
                assert f"You said: message {i}" in ran.stdout, ran
            else:
                assert "The first ten primes" in ran.stdout, ran
        assert worker.stop() == 0, worker.log.read_text()[-3000:]
    finally:
        if worker is not None:
            worker.stop()
        assert dev.stop() == 0, dev.log.read_text()[-3000:]


async def test_a_gateway_port_in_use_stops_the_gateway_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = newcomer_env(**GATEWAY_KEYS, SESSIONFLOW_GATEWAY_PORT=str(port))
        ran = await run("gateway", env=env, cwd=tmp_path, timeout=60)
    assert ran.code == 1, ran
    assert ran.stderr.strip().splitlines()[-1] == (
        f"Error: port {port} on 127.0.0.1 (for the gateway) is already in use by another "
        "program; choose another with SESSIONFLOW_GATEWAY_PORT"
    ), ran.stderr


# -- the CLI's sessions on dev's web page ---------------------------------------------


def test_the_cli_tenant_is_dev_with_the_local_stack_unless_set(tmp_path: Path) -> None:
    from sessionflow.config import ConfigError, Settings

    (tmp_path / "redis.password").write_text("local-password\n")
    local = {"SESSIONFLOW_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(local).tenant == "dev"
    assert Settings.from_env({**local, "SESSIONFLOW_TENANT": "acme"}).tenant == "acme"
    assert Settings.from_env({**local, "SESSIONFLOW_TENANT": ""}).tenant is None
    # Another Redis, or no local stack: ids as given.
    assert Settings.from_env({**local, "REDIS_URL": "redis://127.0.0.1:6380/0"}).tenant is None
    assert Settings.from_env({"SESSIONFLOW_DATA_DIR": str(tmp_path / "none")}).tenant is None
    with pytest.raises(ConfigError, match=r"^SESSIONFLOW_TENANT must be 1-64 letters"):
        Settings.from_env({"SESSIONFLOW_TENANT": "acme:chat"})


async def test_a_session_sent_from_the_cli_is_on_the_dev_web_page(tmp_path: Path) -> None:
    """`sessionflow send my-chat ...` in the shell dev tells to use, and the page's
    `my-chat` (the development key's tenant, `dev`) are one session, both ways."""
    project = own_project(tmp_path / "project")
    dev = Dev(project, ["dev", "--agents", "mypackage.agents:assistant"], tmp_path / "dev.log")
    try:
        await dev.ready()
        assert "SESSIONFLOW_TENANT=dev" in dev.export_line()
        sent = await in_shell(
            "sessionflow send my-chat 'Hello there' --agent assistant", dev, project
        )
        assert sent.code == 0 and "You said: Hello there" in sent.stdout, sent

        gateway = f"http://127.0.0.1:{dev.gateway_port}"
        page = {"authorization": "Bearer sf-dev-key"}
        async with httpx.AsyncClient(base_url=gateway, headers=page, timeout=30) as http:
            listed = (await http.get("/v1/sessions")).json()["sessions"]
            assert [(s["sessionId"], s["agent"]) for s in listed] == [("my-chat", "assistant")]
            history = (await http.get("/v1/sessions/my-chat/history")).json()["messages"]
            assert [(m["role"], [p.get("text") for p in m["parts"] if p["type"] == "text"])
                    for m in history] == [
                ("user", ["Hello there"]),
                ("assistant", ["You said: Hello there"]),
            ]  # fmt: skip
            # The other way: a session the page starts is the CLI's `page-chat`.
            posted = await http.post("/v1/sessions/page-chat/messages", json={"message": "hi"})
            assert posted.status_code == 202, posted.text
            answer = posted.json()["assistantMessageId"]
            done = await http.get(f"/v1/sessions/page-chat/messages/{answer}/outcome?wait=30")
            assert done.json()["done"] is True, done.text

        read = await in_shell("sessionflow history page-chat --agent assistant", dev, project)
        assert read.code == 0 and "You said: hi" in read.stdout, read
        listing = await in_shell("sessionflow sessions", dev, project)
        assert listing.code == 0, listing
        rows = [line.split()[0] for line in listing.stdout.splitlines()[2:]]
        assert sorted(rows) == ["my-chat", "page-chat"], listing.stdout
        # Without a tenant, the ids are the full ones: nothing is named plain `my-chat`.
        plain = await in_shell("sessionflow sessions --tenant ''", dev, project)
        assert sorted(line.split()[0] for line in plain.stdout.splitlines()[1:]) == [
            "dev:my-chat",
            "dev:page-chat",
        ], plain.stdout
    finally:
        assert dev.stop() == 0, dev.log.read_text()[-3000:]
