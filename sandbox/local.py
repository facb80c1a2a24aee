"""The local sandbox: a workspace directory per sandbox id on the worker's machine.

Commands run in their own process group so that a timeout or an interrupt kills
everything they started, not just the shell. Their environment is rebuilt from an
allow-list, so the worker's secrets (model API keys and the like) are not visible to
them. When bubblewrap (`bwrap`) is installed, commands also run inside it: the
filesystem read-only except the workspace, other workspaces hidden, own /tmp and
IPC namespace. Without it this isolates files and secrets, not the machine: for
untrusted code use bubblewrap or a VM-backed sandbox (E2B).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import inspect
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sessionflow.errors import InvalidInput, SandboxNotFound, SandboxRefused
from sessionflow.ids import sandbox_owner
from sessionflow.sandbox.base import ExecResult, FileEntry, OutputCallback, SandboxStatus

DEFAULT_TIMEOUT_SECONDS = 120.0
DEFAULT_OUTPUT_CAP_BYTES = 64 * 1024
# Environment variables a command may inherit from the worker; everything else is dropped.
ENV_ALLOW_LIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ")
# How long to wait for pipes to drain once the shell has exited.
_DRAIN_GRACE_SECONDS = 1.0

_SANDBOX_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _Capture:
    """Collects one output stream up to a byte cap, decoding UTF-8 across reads."""

    def __init__(self, cap: int, callback: OutputCallback | None) -> None:
        self._cap = cap
        self._callback = callback
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._kept = 0
        self.dropped = 0

    async def feed(self, data: bytes) -> None:
        room = self._cap - self._kept
        kept, extra = data[:room], data[room:]
        self._kept += len(kept)
        self.dropped += len(extra)
        if not kept:
            return
        text = self._decoder.decode(kept)
        self._parts.append(text)
        if self._callback is not None and text:
            maybe = self._callback(text)
            if inspect.isawaitable(maybe):
                await maybe

    def text(self) -> str:
        body = "".join(self._parts) + self._decoder.decode(b"", final=True)
        if self.dropped:
            body += f"\n[output truncated: {self.dropped} more bytes not shown]"
        return body


def bubblewrap() -> str | None:
    """The `bwrap` binary if it is installed and can create a sandbox here (it needs
    user namespaces, which some containers deny)."""
    found = shutil.which("bwrap")
    if found is None:
        return None
    probe = subprocess.run(
        [found, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-ipc",
         "--die-with-parent", "true"],
        capture_output=True,
        timeout=10,
        check=False,
    )  # fmt: skip
    return found if probe.returncode == 0 else None


def _isolated(bwrap: str, workspace: Path, workdir: Path, command: str) -> list[str]:
    """`command` under bubblewrap: the filesystem read-only, other workspaces hidden,
    only this workspace writable, its own /tmp and IPC. Pids stay shared so that the
    whole process group can be killed from outside on timeout or interrupt."""
    ws = str(workspace)
    return [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--tmpfs", str(workspace.parent), "--bind", ws, ws,
        "--unshare-ipc", "--unshare-uts", "--die-with-parent",
        "--chdir", str(workdir), "/bin/bash", "-c", command,
    ]  # fmt: skip


@dataclass(frozen=True)
class LocalSandbox:
    """A workspace directory; commands run with it as their home and working directory,
    inside bubblewrap when `bwrap` is given."""

    id: str
    workspace: Path
    output_cap: int = DEFAULT_OUTPUT_CAP_BYTES
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS
    bwrap: str | None = None

    @property
    def _pause_marker(self) -> Path:
        return self.workspace.parent / ".paused" / self.id

    async def status(self) -> SandboxStatus:
        if not self.workspace.is_dir():
            return SandboxStatus.STOPPED
        return SandboxStatus.PAUSED if self._pause_marker.exists() else SandboxStatus.RUNNING

    async def pause(self) -> None:
        """Nothing runs between commands locally; the mark only shows in the status."""
        self._pause_marker.parent.mkdir(parents=True, exist_ok=True)
        self._pause_marker.touch()

    async def resume(self) -> None:
        self._pause_marker.unlink(missing_ok=True)

    async def kill(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workspace, True)
        self._pause_marker.unlink(missing_ok=True)

    def resolve(self, path: str) -> Path:
        """A workspace path, refusing anything that leads outside the workspace:
        absolute paths, `..`, and symlinks pointing out."""
        if not self.workspace.is_dir():
            raise SandboxNotFound(f"sandbox {self.id!r} has no workspace at {self.workspace}")
        if Path(path).is_absolute():
            raise SandboxRefused(f"{path!r} is absolute; use a path relative to the workspace")
        root = self.workspace.resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise SandboxRefused(f"{path!r} leads outside the workspace")
        return target

    async def read_file(self, path: str) -> str:
        target = self.resolve(path)
        if not target.is_file():
            raise FileNotFoundError(f"no file {path!r} in the workspace")
        return await asyncio.to_thread(target.read_text, "utf-8", "replace")

    async def write_file(self, path: str, content: str) -> None:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_text, content, "utf-8")

    async def list_files(self, path: str, depth: int) -> list[FileEntry]:
        start = self.resolve(path)
        if not start.is_dir():
            raise FileNotFoundError(f"no directory {path!r} in the workspace")
        root = self.workspace.resolve()
        return await asyncio.to_thread(_walk, start, root, depth)

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecResult:
        started = time.monotonic()
        workdir = self._workdir(cwd)
        argv = (
            _isolated(self.bwrap, self.workspace, workdir, command)
            if self.bwrap
            else ["/bin/bash", "-c", command]
        )
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            env=self._environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        out = _Capture(self.output_cap, on_stdout)
        err = _Capture(self.output_cap, on_stderr)
        assert proc.stdout is not None and proc.stderr is not None
        pumps = asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout or self.default_timeout):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
            # Pipes stay open while anything the command left behind holds them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pumps), _DRAIN_GRACE_SECONDS)
        finally:
            _kill_group(proc.pid)
            exit_code = await proc.wait()
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumps
        return ExecResult(
            exit_code=124 if timed_out else exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            truncated=bool(out.dropped or err.dropped),
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    def _workdir(self, cwd: str | None) -> Path:
        return self.resolve(cwd or ".")

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW_LIST}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["HOME"] = str(self.workspace)
        env["PWD"] = str(self.workspace)
        return env


def _walk(start: Path, root: Path, depth: int) -> list[FileEntry]:
    entries: list[FileEntry] = []
    for child in sorted(start.iterdir()):
        is_dir = child.is_dir() and not child.is_symlink()
        size = 0 if is_dir else child.lstat().st_size
        entries.append(FileEntry(path=str(child.relative_to(root)), is_dir=is_dir, size=size))
        if is_dir and depth > 1:
            entries.extend(_walk(child, root, depth - 1))
    return entries


async def _pump(stream: asyncio.StreamReader, capture: _Capture) -> None:
    while data := await stream.read(4096):
        await capture.feed(data)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class LocalSandboxBackend:
    """Workspaces under one root directory, one per sandbox id.

    `isolation`: "auto" runs commands in bubblewrap when it is installed and works,
    "bwrap" requires it, "none" never uses it.
    """

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        output_cap: int = DEFAULT_OUTPUT_CAP_BYTES,
        default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        isolation: str = "auto",
    ) -> None:
        self.root = root
        self._output_cap = output_cap
        self._default_timeout = default_timeout
        if isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation must be auto, bwrap or none, not {isolation!r}")
        self.bwrap = None if isolation == "none" else bubblewrap()
        if isolation == "bwrap" and self.bwrap is None:
            raise SandboxRefused("isolation='bwrap' but bubblewrap is missing or cannot run here")

    async def create(self, *, owner: str) -> LocalSandbox:
        sandbox = self._sandbox(f"sbx-{uuid.uuid4().hex[:16]}")
        # The owner is recorded beside the workspaces, where no sandbox can see it.
        record = self._owner_record(sandbox.id)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(owner)
        sandbox.workspace.mkdir(parents=True, exist_ok=False)
        return sandbox

    async def connect(self, sandbox_id: str, *, owner: str | None = None) -> LocalSandbox:
        sandbox = self._sandbox(sandbox_id)
        # A foreign sandbox is "not found", exactly like a missing one.
        if not sandbox.workspace.is_dir() or (
            owner is not None and self._owner_of(sandbox_id) != owner
        ):
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}")
        return sandbox

    def _owner_record(self, sandbox_id: str) -> Path:
        return self.root / ".owners" / sandbox_id

    def _owner_of(self, sandbox_id: str) -> str:
        """Who the sandbox belongs to; one made before owners were recorded belongs to
        sessions without a tenant."""
        try:
            return self._owner_record(sandbox_id).read_text()
        except FileNotFoundError:
            return sandbox_owner("")

    def _sandbox(self, sandbox_id: str) -> LocalSandbox:
        if not _SANDBOX_ID.match(sandbox_id):
            raise InvalidInput(f"invalid sandbox id {sandbox_id!r}")
        return LocalSandbox(
            id=sandbox_id,
            workspace=(self.root / sandbox_id).absolute(),
            output_cap=self._output_cap,
            default_timeout=self._default_timeout,
            bwrap=self.bwrap,
        )
