"""A stand-in for the `e2b` package at the SDK boundary: same classes, calls and
exceptions, backed by directories and real processes on this machine.

There is no E2B access from here; this fake lets the backend's own code run end to
end (create, connect/resume, commands with streaming and timeouts, files, pause,
kill, errors) while recording what it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SandboxException(Exception):
    pass


class SandboxNotFoundException(SandboxException):
    pass


class NotFoundException(SandboxException):
    pass


class FileNotFoundException(NotFoundException):
    """What the SDK raises for a path that does not exist in the sandbox."""


class TimeoutException(SandboxException):
    pass


class AuthenticationException(SandboxException):
    pass


class RateLimitException(SandboxException):
    pass


class CommandExitException(SandboxException):
    def __init__(self, stdout: str, stderr: str, exit_code: int) -> None:
        super().__init__(f"Command exited with code {exit_code}")
        self.stdout, self.stderr, self.exit_code = stdout, stderr, exit_code


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int


@dataclass
class EntryInfo:
    name: str
    path: str
    type: str
    size: int


@dataclass
class Info:
    state: str
    metadata: dict[str, str] | None = None


class _ClassOrInstance:
    """Like the SDK's `class_method_variant`: `AsyncSandbox.get_info(id)` on the class,
    `sandbox.get_info()` on an instance."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance is None:
            return lambda sandbox_id, **opts: self._fn(owner, sandbox_id, **opts)
        return lambda **opts: self._fn(owner, instance.sandbox_id, **opts)


@dataclass
class Record:
    template: str | None
    timeout: int | None
    metadata: dict[str, str] | None
    state: str = "running"
    resumed: int = 0
    killed_commands: int = 0
    commands: list[str] = field(default_factory=list)


class FakeE2B:
    """Use as `E2BSandboxBackend(sdk=FakeE2B(root))`."""

    SandboxException = SandboxException
    SandboxNotFoundException = SandboxNotFoundException
    NotFoundException = NotFoundException
    FileNotFoundException = FileNotFoundException
    TimeoutException = TimeoutException
    AuthenticationException = AuthenticationException
    RateLimitException = RateLimitException
    CommandExitException = CommandExitException

    def __init__(self, root: Path, *, valid_key: str = "e2b-test-key") -> None:
        self.root = root
        self.valid_key = valid_key
        self.sandboxes: dict[str, Record] = {}
        self._ids = itertools.count(1)
        fake = self

        class AsyncSandbox:
            def __init__(self, sandbox_id: str) -> None:
                self.sandbox_id = sandbox_id
                self.commands = _Commands(fake, sandbox_id)
                self.files = _Files(fake, sandbox_id)

            @classmethod
            async def create(cls, template: str | None = None, timeout: int | None = None,
                             metadata: dict[str, str] | None = None, api_key: str | None = None) -> AsyncSandbox:  # fmt: skip
                fake._authenticate(api_key)
                sandbox_id = f"e2b-{next(fake._ids)}"
                fake.sandboxes[sandbox_id] = Record(template, timeout, metadata)
                fake.home(sandbox_id).mkdir(parents=True)
                return cls(sandbox_id)

            @classmethod
            async def connect(cls, sandbox_id: str, api_key: str | None = None) -> AsyncSandbox:
                fake._authenticate(api_key)
                record = fake._record(sandbox_id)
                if record.state == "paused":
                    record.state = "running"
                    record.resumed += 1
                return cls(sandbox_id)

            @_ClassOrInstance
            async def get_info(cls, sandbox_id: str, api_key: str | None = None) -> Info:
                if api_key is not None:
                    fake._authenticate(api_key)
                record = fake._record(sandbox_id)
                return Info(record.state, record.metadata)

            async def pause(self) -> None:
                fake._record(self.sandbox_id).state = "paused"

            async def kill(self) -> None:
                fake._record(self.sandbox_id)
                fake.kill_externally(self.sandbox_id)

        self.AsyncSandbox = AsyncSandbox

    def home(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id / "home" / "user"

    def local(self, sandbox_id: str, path: str) -> Path:
        assert path.startswith("/home/user"), path
        return self.home(sandbox_id) / path.removeprefix("/home/user").lstrip("/")

    def kill_externally(self, sandbox_id: str) -> None:
        """The sandbox ends outside Sessionflow's control (timeout, dashboard...)."""
        self.sandboxes.pop(sandbox_id, None)
        shutil.rmtree(self.root / sandbox_id, ignore_errors=True)

    def _authenticate(self, api_key: str | None) -> None:
        if api_key != self.valid_key:
            raise AuthenticationException("Invalid API key")

    def _record(self, sandbox_id: str) -> Record:
        if sandbox_id not in self.sandboxes:
            raise SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        return self.sandboxes[sandbox_id]


class _Handle:
    def __init__(self, process: asyncio.subprocess.Process, timeout: float, on_stdout: Any,
                 on_stderr: Any, record: Record) -> None:  # fmt: skip
        self._process, self._timeout, self._record = process, timeout, record
        self._callbacks = (on_stdout, on_stderr)

    async def wait(self) -> CommandResult:
        out: list[str] = []
        err: list[str] = []

        async def pump(stream: asyncio.StreamReader, into: list[str], callback: Any) -> None:
            while data := await stream.read(1024):
                text = data.decode()
                into.append(text)
                if callback:
                    callback(text)

        assert self._process.stdout and self._process.stderr
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(
                    pump(self._process.stdout, out, self._callbacks[0]),
                    pump(self._process.stderr, err, self._callbacks[1]),
                    self._process.wait(),
                )
        except TimeoutError:
            raise TimeoutException("command timed out") from None
        code = self._process.returncode or 0
        if code != 0:
            raise CommandExitException("".join(out), "".join(err), code)
        return CommandResult("".join(out), "".join(err), 0)

    async def kill(self) -> bool:
        self._record.killed_commands += 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        return True


class _Commands:
    def __init__(self, fake: FakeE2B, sandbox_id: str) -> None:
        self._fake, self._id = fake, sandbox_id

    async def run(self, cmd: str, background: bool = False, cwd: str | None = None,
                  timeout: float = 60, on_stdout: Any = None, on_stderr: Any = None) -> _Handle:  # fmt: skip
        record = self._fake._record(self._id)
        record.commands.append(cmd)
        process = await asyncio.create_subprocess_exec(
            "/bin/bash", "-c", cmd, cwd=self._fake.local(self._id, cwd or "/home/user"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert background, "the backend runs commands in the background to be able to kill them"
        return _Handle(process, timeout, on_stdout, on_stderr, record)


class _Stream:
    """Like the SDK's AsyncFileStreamReader: chunks of the file as they are read."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> bytes:
        chunk = self._file.read(64 * 1024)
        if not chunk:
            raise StopAsyncIteration
        return bytes(chunk)

    async def aclose(self) -> None:
        self._file.close()


class _Files:
    def __init__(self, fake: FakeE2B, sandbox_id: str) -> None:
        self._fake, self._id = fake, sandbox_id

    def _existing(self, path: str) -> Path:
        target = self._fake.local(self._id, path)
        if not target.exists():
            raise FileNotFoundException(f"path '{path}' does not exist")
        return target

    async def read(self, path: str, format: str = "text") -> Any:
        self._fake._record(self._id)
        self._existing(path)
        if format == "stream":
            return _Stream(self._fake.local(self._id, path).open("rb"))
        return self._fake.local(self._id, path).read_text()

    async def write(self, path: str, data: str) -> None:
        self._fake._record(self._id)
        target = self._fake.local(self._id, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data)

    async def list(self, path: str, depth: int = 1) -> list[EntryInfo]:
        self._fake._record(self._id)
        base = self._existing(path)
        home = self._fake.home(self._id)
        out = []
        for child in sorted(base.rglob("*")):
            if len(child.relative_to(base).parts) > depth:
                continue
            virtual = "/home/user/" + str(child.relative_to(home))
            kind = "dir" if child.is_dir() else "file"
            out.append(
                EntryInfo(child.name, virtual, kind, 0 if child.is_dir() else child.stat().st_size)
            )
        return out
