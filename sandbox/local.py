"""The local sandbox: a workspace directory per sandbox id on the worker's machine.

Commands run confined by bubblewrap (`sessionflow.sandbox.isolation`): their own
namespaces (no other process, no network route to the worker's services), an
unprivileged uid without capabilities, only the system directories and their
workspace (at `/workspace`) in view, an allow-listed environment and resource limits.
When the command ends, times out or is interrupted, everything it started dies with
it. Isolation that cannot be set up is refused (`SandboxRefused`), unless the operator
opts out with `isolation="none"` (`SESSIONFLOW_SANDBOX_ISOLATION=none`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import inspect
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

from sessionflow.errors import InvalidInput, SandboxNotFound, SandboxRefused
from sessionflow.ids import sandbox_owner
from sessionflow.sandbox import disk, workspace_files
from sessionflow.sandbox.base import (
    DEFAULT_LIST_SECONDS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_LIST_ENTRIES,
    DEFAULT_SCAN_BYTES,
    ExecResult,
    FileLines,
    FileListing,
    OutputCallback,
    SandboxStatus,
)
from sessionflow.sandbox.cgroups import Share, Unavailable
from sessionflow.sandbox.disk import Disks
from sessionflow.sandbox.isolation import (
    LIMITS_OPTOUT,
    Bubblewrap,
    Isolation,
    Limits,
    Refused,
    Unconfined,
)
from sessionflow.sandbox.isolation import setup as setup_isolation
from sessionflow.sandbox.uids import HostUids

DEFAULT_TIMEOUT_SECONDS = 120.0
DEFAULT_OUTPUT_CAP_BYTES = 64 * 1024
# How long to wait for pipes to drain once the shell has exited.
_DRAIN_GRACE_SECONDS = 1.0

log = structlog.get_logger(__name__)
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
    """The `bwrap` binary if it is installed and can create the sandbox here (it needs
    user namespaces, which some containers deny)."""
    chosen = setup_isolation("bubblewrap")
    return chosen.bwrap if isinstance(chosen, Bubblewrap) else None


_NOT_SET_UP = Refused("the sandbox was made without an isolation")


@dataclass(frozen=True)
class LocalSandbox:
    """A workspace directory; commands run with it as their home and working directory,
    confined as `isolation` says (the backend's); with `disks`, the workspace is a
    filesystem of its own, of the sandbox's disk share (`sandbox.disk`)."""

    id: str
    workspace: Path
    output_cap: int = DEFAULT_OUTPUT_CAP_BYTES
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS
    isolation: Isolation = _NOT_SET_UP
    disks: Disks | None = None

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
        if self.disks is not None:
            await asyncio.to_thread(self.disks.remove, self.workspace)
        await asyncio.to_thread(shutil.rmtree, self.workspace, True)
        await asyncio.to_thread(self.isolation.release, self.workspace)
        self._pause_marker.unlink(missing_ok=True)
        # Its owner record (`LocalSandboxBackend.create`): nothing of it is left.
        (self.workspace.parent / ".owners" / self.id).unlink(missing_ok=True)

    def resolve(self, path: str) -> Path:
        """A workspace path, refusing absolute paths, `..` out of the workspace and
        symlinks. A check only, for what must be handed on by name (a command's working
        directory): the file methods never open a resolved path again, they open
        beneath a descriptor of the workspace (`sandbox.workspace_files`)."""
        return workspace_files.check(self.workspace, path)

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
        return await asyncio.to_thread(workspace_files.read_text, self.workspace, path, max_bytes)

    async def read_lines(
        self,
        path: str,
        *,
        offset: int = 1,
        limit: int,
        max_bytes: int,
        scan_bytes: int = DEFAULT_SCAN_BYTES,
    ) -> FileLines:
        return await asyncio.to_thread(
            workspace_files.read_lines,
            self.workspace,
            path,
            offset=offset,
            limit=limit,
            max_bytes=max_bytes,
            scan_bytes=scan_bytes,
        )

    async def write_file(self, path: str, content: str) -> None:
        await asyncio.to_thread(workspace_files.write_text, self.workspace, path, content)

    async def list_files(
        self,
        path: str,
        depth: int,
        *,
        max_entries: int = DEFAULT_MAX_LIST_ENTRIES,
        seconds: float = DEFAULT_LIST_SECONDS,
    ) -> FileListing:
        return await asyncio.to_thread(
            workspace_files.list_entries,
            self.workspace,
            path,
            depth,
            max_entries=max_entries,
            seconds=seconds,
        )

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
        out = _Capture(self.output_cap, on_stdout)
        err = _Capture(self.output_cap, on_stderr)
        timed_out = False
        # Leaving `spawn` kills whatever of the command is left (its pid namespace).
        async with self.isolation.spawn(self.workspace, workdir, command) as running:
            proc = running.proc
            assert proc.stdout is not None and proc.stderr is not None
            pumps = asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err))
            try:
                try:
                    async with asyncio.timeout(timeout or self.default_timeout):
                        await proc.wait()
                except TimeoutError:
                    timed_out = True
                    await running.kill()
                # Pipes stay open while anything the command left behind holds them.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pumps), _DRAIN_GRACE_SECONDS)
            finally:
                pumps.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pumps
            note = await asyncio.to_thread(running.share_note)
        if note:
            await err.feed(f"\n{note}\n".encode())
        exit_code = proc.returncode if proc.returncode is not None else -1
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


async def _pump(stream: asyncio.StreamReader, capture: _Capture) -> None:
    while data := await stream.read(4096):
        await capture.feed(data)


class LocalSandboxBackend:
    """Workspaces under one root directory, one per sandbox id.

    `isolation`: "bubblewrap" (the default) confines every command (see
    `sessionflow.sandbox.isolation`); when that cannot be set up here, creating or
    using a sandbox is refused with `SandboxRefused` saying what is missing. "none"
    runs commands unconfined, for trusted code only, and says so loudly in the log.
    `network`: "none" (the default) or "egress" (through slirp4netns, never the host's
    loopback). `limits`: what each process of a command may use. `share`: what each
    sandbox may use, all its processes together (cgroups) and its workspace (a
    fixed-size filesystem). `enforce`: "kernel" (the default) refuses a host that
    cannot enforce the share or the seccomp filter; "best-effort" runs without what
    is missing. `uids`: the host uids sandboxes run as, one each, when the worker runs
    as root. `bwrap`: the binary, instead of the one on PATH. `effective_isolation`
    says what is in force.
    """

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        output_cap: int = DEFAULT_OUTPUT_CAP_BYTES,
        default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        isolation: str = "bubblewrap",
        network: str = "none",
        limits: Limits | None = None,
        share: Share | None = None,
        enforce: str = "kernel",
        uids: HostUids | None = None,
        bwrap: str | None = None,
    ) -> None:
        self.root = root
        self._output_cap = output_cap
        self._default_timeout = default_timeout
        share = share or Share()
        self.isolation: Isolation = setup_isolation(
            isolation, network=network, limits=limits, share=share, enforce=enforce,
            uids=uids, bwrap=bwrap,
        )  # fmt: skip
        self.disks: Disks | None = None
        self._disk_missing = ""
        if isinstance(self.isolation, Bubblewrap):
            try:
                self.disks = disk.setup(root, share.disk_bytes)
            except Unavailable as err:
                if enforce == "kernel":
                    self.isolation = Refused(f"no disk share: {err}; {LIMITS_OPTOUT}")
                self._disk_missing = str(err)
        if isinstance(self.isolation, Unconfined):
            log.warning(
                "local sandbox commands run WITHOUT ISOLATION: only for trusted code",
                isolation=self.isolation.description,
            )
        elif isinstance(self.isolation, Refused):
            log.error("local sandboxes are refused", reason=self.isolation.reason)

    @property
    def effective_isolation(self) -> str:
        """What confines commands, in one line (for the worker's start log and `dev`)."""
        if not isinstance(self.isolation, Bubblewrap):
            return self.isolation.description
        if self.disks is not None:
            held = f"disk share: {self.disks.describe()}"
        else:
            held = f"NO disk share [best-effort, not enforced: {self._disk_missing}]"
        return f"{self.isolation.description}; {held}"

    async def create(self, *, owner: str) -> LocalSandbox:
        sandbox = self._sandbox(f"sbx-{uuid.uuid4().hex[:16]}")
        # The owner is recorded beside the workspaces, where no sandbox can see it.
        record = self._owner_record(sandbox.id)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(owner)
        sandbox.workspace.mkdir(parents=True, exist_ok=False)
        await self._mount(sandbox)
        return sandbox

    async def connect(self, sandbox_id: str, *, owner: str | None = None) -> LocalSandbox:
        sandbox = self._sandbox(sandbox_id)
        # A foreign sandbox is "not found", exactly like a missing one.
        if not sandbox.workspace.is_dir() or (
            owner is not None and self._owner_of(sandbox_id) != owner
        ):
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}")
        await self._mount(sandbox)
        return sandbox

    async def _mount(self, sandbox: LocalSandbox) -> None:
        """The workspace's disk, mounted (again, after a reboot) before any use."""
        if self.disks is not None:
            try:
                await asyncio.to_thread(self.disks.ensure, sandbox.workspace)
            except OSError as err:
                raise SandboxRefused(f"the workspace's disk could not be mounted: {err}") from None

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
        if isinstance(self.isolation, Refused):
            raise self.isolation.refuse()
        if not _SANDBOX_ID.match(sandbox_id):
            raise InvalidInput(f"invalid sandbox id {sandbox_id!r}")
        return LocalSandbox(
            id=sandbox_id,
            workspace=(self.root / sandbox_id).absolute(),
            output_cap=self._output_cap,
            default_timeout=self._default_timeout,
            isolation=self.isolation,
            disks=self.disks,
        )
