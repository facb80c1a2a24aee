"""The sandbox interface every backend implements.

A sandbox is where a session's commands and file tools run. Backends differ in
where that is (a local directory, a cloud VM); tools and activities only see this
interface, so a session can move between backends without its tools changing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel

# Results that cross the workflow boundary live in the contract; backends use them here.
from sessionflow.contract import ExecResult as ExecResult
from sessionflow.contract import SandboxStatus as SandboxStatus

OutputCallback = Callable[[str], Awaitable[None] | None]

# The most a file read reads whole (`Sandbox.read_file`) unless the caller says otherwise.
DEFAULT_MAX_FILE_BYTES = 8 * 1024 * 1024
# How far into a file `Sandbox.read_lines` looks, to reach its offset and count its lines.
DEFAULT_SCAN_BYTES = 64 * 1024 * 1024
# The most entries `Sandbox.list_files` returns, and how long it may walk: a listing
# runs where the worker can feel it (in its threads, or its results come back into its
# memory), so a tree of a million files must cost no more than a small one.
DEFAULT_MAX_LIST_ENTRIES = 2000
DEFAULT_LIST_SECONDS = 5.0


class FileEntry(BaseModel):
    """One file or directory, its path relative to the sandbox's workspace."""

    path: str
    is_dir: bool
    size: int = 0


ListingCut = Literal["entries", "time"]


class FileListing(BaseModel):
    """Entries under a directory (`Sandbox.list_files`), parents before their children,
    and why the walk stopped before the end, if it did: at its entry cap ("entries") or
    its deadline ("time")."""

    entries: list[FileEntry]
    cut: ListingCut | None = None


class FileLines(BaseModel):
    """A window of a text file's lines (`Sandbox.read_lines`), without their line ends."""

    lines: list[str]
    # The last line was longer than the window's byte cap and holds only its start.
    cut: bool = False
    # Lines in the whole file; None when the file is longer than the backend looks.
    total_lines: int | None = None


class Sandbox(Protocol):
    @property
    def id(self) -> str: ...

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
        """A text file's whole content; paths are relative to the workspace. A file of
        more than `max_bytes` bytes is refused with `FileTooLarge`, without reading it."""
        ...

    async def read_lines(
        self,
        path: str,
        *,
        offset: int = 1,
        limit: int,
        max_bytes: int,
        scan_bytes: int = DEFAULT_SCAN_BYTES,
    ) -> FileLines:
        """Up to `limit` lines from line `offset` (1-based), holding at most `max_bytes`
        bytes of them (one longer line is cut to that, `cut`), streamed from the file:
        never more than `max_bytes` of it in memory and at most `scan_bytes` of it read
        (`total_lines` is None if that did not reach the end)."""
        ...

    async def write_file(self, path: str, content: str) -> None:
        """Write a text file, creating its directories."""
        ...

    async def list_files(
        self,
        path: str,
        depth: int,
        *,
        max_entries: int = DEFAULT_MAX_LIST_ENTRIES,
        seconds: float = DEFAULT_LIST_SECONDS,
    ) -> FileListing:
        """Entries under `path`, `depth` levels deep, directories before what they hold:
        at most `max_entries` of them, walked for at most about `seconds`, lazily (a
        huge tree is never held whole), `cut` saying which bound stopped it."""
        ...

    async def pause(self) -> None: ...

    async def kill(self) -> None:
        """Stop the sandbox for good and release what it holds."""
        ...

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecResult:
        """Run a shell command; kill it and everything it started on timeout or cancel."""
        ...

    async def status(self) -> SandboxStatus: ...


class SandboxBackend(Protocol):
    name: str

    async def create(self, *, owner: str) -> Sandbox:
        """Provision a new sandbox that belongs to `owner` (`sessionflow.ids.sandbox_owner`)."""
        ...

    async def connect(self, sandbox_id: str, *, owner: str | None = None) -> Sandbox:
        """Attach to an existing sandbox; raises `SandboxNotFound` if it is gone, or if
        `owner` is given and the sandbox belongs to someone else (indistinguishable on
        purpose: a foreign id must not be confirmed to exist). `owner=None` is for
        lifecycle calls on the id a session already holds."""
        ...
