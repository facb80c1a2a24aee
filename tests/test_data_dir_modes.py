"""The local stack's data is readable by its owner alone: every directory under the
data directory is 0700 (or stricter) and every file 0600, the Temporal database and
Redis's append-only file (which keeps a deleted context until its next rewrite)
included; a data directory an older version left open is tightened when the stack
starts; the payload store writes 0600 files in 0700 directories."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverStoreContext

from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.connections import connect_redis
from sessionflow.storage.files import FileStorageDriver
from sessionflow.storage.namespaces import session_context

pytestmark = pytest.mark.slow

SECRET = "sk-context-secret-0123456789"


def open_to_others(root: Path, skip: Path | None = None) -> list[str]:
    """Every entry under `root` (and `root` itself) with a group or other permission
    bit, as `path mode`; symbolic links and anything under `skip` aside."""
    found = []
    for top, dirs, files in os.walk(root):
        if skip is not None and Path(top) == skip.parent:
            dirs[:] = [d for d in dirs if Path(top) / d != skip]
        for path in (Path(top), *(Path(top) / name for name in files)):
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{path.relative_to(root)} {stat.S_IMODE(mode):o}")
    return sorted(set(found))


async def test_the_stack_s_files_are_its_owner_s_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # As an older version left it: everything readable by every local user.
    old = os.umask(0o022)
    try:
        for directory in ("logs", "redis", "payloads/sha256/ab", "sandboxes/.owners"):
            (data_dir / directory).mkdir(parents=True)
        (data_dir / "logs" / "temporal.log").write_text("old log\n")
        (data_dir / "payloads" / "sha256" / "ab" / "ab12").write_bytes(b"payload")
        (data_dir / "sandboxes" / ".owners" / "sbx-1").write_text("acme")
        workspace = data_dir / "sandboxes" / "sbx-1"
        workspace.mkdir()
        (workspace / "notes.txt").write_text("the sandbox's own file")
    finally:
        os.umask(old)
    assert open_to_others(data_dir)

    config = StackConfig.on_free_ports(data_dir)
    async with LocalStack(config, say=lambda _: None):
        redis = await connect_redis(config.redis_url)
        try:
            await redis.set("sessionflow:context:x", SECRET)
            await redis.delete("sessionflow:context:x")
            await redis.execute_command("CONFIG", "SET", "appendfsync", "always")
            await redis.set("sessionflow:flush", "1")
        finally:
            await redis.aclose()
        await asyncio.sleep(0.5)
        aof = [p for p in (data_dir / "redis").rglob("*") if p.is_file() and "aof" in p.name]
        assert any(SECRET.encode() in p.read_bytes() for p in aof), aof  # still in there
        assert (data_dir / "temporal.db").exists()
        # While the servers run, and what they wrote: owner only.
        assert open_to_others(data_dir, skip=workspace) == []
    assert open_to_others(data_dir, skip=workspace) == []
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "temporal.db").stat().st_mode) == 0o600
    # The sandbox's own files are left as the sandbox made them.
    assert stat.S_IMODE((workspace / "notes.txt").stat().st_mode) == 0o644


async def test_the_payload_store_writes_private_files_in_private_directories(
    tmp_path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        driver = FileStorageDriver(tmp_path / "store" / "payloads")
        # A session's payload (in its namespace) and one of no session.
        await driver.store(session_context("session:a:b"), [Payload(data=b"a message")])
        await driver.store(StorageDriverStoreContext(), [Payload(data=b"no session's")])
    finally:
        os.umask(old)
    assert open_to_others(tmp_path / "store") == []
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert len(files) == 2 and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
