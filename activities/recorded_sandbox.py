"""A sandbox whose command results outlive the worker that ran them.

A tool call retried after a worker crash runs its code again. Commands it had
already finished are not re-run: each `exec` of a tool call is numbered, its result
kept in Redis under (workflow id, tool call id, number), and the retry gets the
recorded result back. Commands are only recorded once they finished, so one that
was cut off by the crash does run again.
"""

from __future__ import annotations

from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sessionflow.sandbox.base import (
    DEFAULT_LIST_SECONDS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_LIST_ENTRIES,
    DEFAULT_SCAN_BYTES,
    ExecResult,
    FileLines,
    FileListing,
    OutputCallback,
    Sandbox,
    SandboxStatus,
)

log = structlog.get_logger(__name__)

RESULT_TTL_SECONDS = 24 * 3600


class RecordedSandbox:
    def __init__(self, inner: Sandbox, redis: Redis, *, workflow_id: str, tool_call_id: str):
        self._inner = inner
        self._redis = redis
        self._prefix = f"sf:{{{workflow_id}}}:exec:{tool_call_id}:"
        self._count = 0
        self.replayed = 0

    @property
    def id(self) -> str:
        return self._inner.id

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecResult:
        self._count += 1
        key = f"{self._prefix}{self._count}"
        recorded = await self._get(key)
        if recorded is not None:
            self.replayed += 1
            return recorded
        result = await self._inner.exec(
            command, cwd=cwd, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )
        try:
            await self._redis.set(key, result.model_dump_json(), ex=RESULT_TTL_SECONDS)
        except (RedisError, OSError) as err:
            log.warning("could not record a command result", error=str(err))
        return result

    async def _get(self, key: str) -> ExecResult | None:
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError) as err:
            log.warning("could not look up a recorded command result", error=str(err))
            return None
        return None if raw is None else ExecResult.model_validate_json(raw)

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
        return await self._inner.read_file(path, max_bytes=max_bytes)

    async def read_lines(
        self,
        path: str,
        *,
        offset: int = 1,
        limit: int,
        max_bytes: int,
        scan_bytes: int = DEFAULT_SCAN_BYTES,
    ) -> FileLines:
        return await self._inner.read_lines(
            path, offset=offset, limit=limit, max_bytes=max_bytes, scan_bytes=scan_bytes
        )

    async def write_file(self, path: str, content: str) -> None:
        await self._inner.write_file(path, content)

    async def list_files(
        self,
        path: str,
        depth: int,
        *,
        max_entries: int = DEFAULT_MAX_LIST_ENTRIES,
        seconds: float = DEFAULT_LIST_SECONDS,
    ) -> FileListing:
        return await self._inner.list_files(path, depth, max_entries=max_entries, seconds=seconds)

    async def status(self) -> SandboxStatus:
        return await self._inner.status()

    async def pause(self) -> None:
        await self._inner.pause()

    async def kill(self) -> None:
        await self._inner.kill()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
