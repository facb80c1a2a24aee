"""The E2B sandbox backend: a cloud VM per sandbox, through the `e2b` SDK's AsyncSandbox.

Configured by `E2B_API_KEY` (and the SDK's own `E2B_DOMAIN`/`E2B_API_URL`). Paths are
relative to the sandbox user's home, as in the local backend; `connect` resumes a
paused sandbox. E2B's exceptions become Sessionflow's: retryable `SandboxError` for
rate limits, timeouts and unreachable sandboxes; `SandboxNotFound` and
`SandboxRefused` (bad credentials, bad arguments, no space) are not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import posixpath
import shlex
from collections.abc import Callable
from typing import Any

from sessionflow.errors import FileTooLarge, SandboxError, SandboxNotFound, SandboxRefused
from sessionflow.sandbox.base import (
    DEFAULT_LIST_SECONDS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_LIST_ENTRIES,
    DEFAULT_SCAN_BYTES,
    ExecResult,
    FileEntry,
    FileLines,
    FileListing,
    ListingCut,
    OutputCallback,
    SandboxStatus,
)
from sessionflow.sandbox.lines import LineWindow

HOME = "/home/user"
DEFAULT_TIMEOUT_SECONDS = 120.0
_NOT_FOUND = ("SandboxNotFoundException", "NotFoundException", "FileNotFoundException")
_REFUSED = ("AuthenticationException", "InvalidArgumentException", "NotEnoughSpaceException")


def _mapped(sdk: Any, err: Exception) -> Exception:
    name = type(err).__name__
    if name in _NOT_FOUND:
        return SandboxNotFound(f"E2B: {err}")
    if name in _REFUSED:
        return SandboxRefused(f"E2B refused: {err}")
    if isinstance(err, sdk.SandboxException):
        return SandboxError(f"E2B: {err}")
    return err


def _file_error(sdk: Any, err: Exception, path: str) -> Exception:
    """A file operation's failure: a missing path is the tool's error (the model reads
    it), not a vanished sandbox (which the workflow would replace)."""
    name = type(err).__name__
    if name in ("FileNotFoundException", "NotFoundException"):
        return FileNotFoundError(f"no file or directory {path!r} in the workspace")
    return _mapped(sdk, err)


_NO_DIRECTORY = 3


def _listing_script(where: str, depth: int, limit: int, seconds: float) -> str:
    """List `where` with `find`: `type size path` records, NUL-ended, at most `limit`
    of them, for at most `seconds`; "time" on stderr if the deadline stopped it."""
    q = shlex.quote(f"./{where}")
    return "\n".join(
        [
            f"[ -d {q} ] || exit {_NO_DIRECTORY}",
            f"timeout {seconds:g} find {q} -mindepth 1 -maxdepth {depth} -printf '%y %s %P\\0'"
            f" 2>/dev/null | head -z -n {limit}",
            '[ "${PIPESTATUS[0]}" = 124 ] && echo time >&2',
            "exit 0",
        ]
    )


def _path(path: str) -> str:
    if path.startswith("/"):
        raise SandboxRefused(f"{path!r} is absolute; use a path relative to the workspace")
    joined = posixpath.normpath(posixpath.join(HOME, path))
    if joined != HOME and not joined.startswith(HOME + "/"):
        raise SandboxRefused(f"{path!r} leads outside the workspace")
    return joined


class E2BSandbox:
    def __init__(self, sdk: Any, sandbox: Any) -> None:
        self._sdk = sdk
        self._sandbox = sandbox

    @property
    def id(self) -> str:
        return str(self._sandbox.sandbox_id)

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            handle = await self._sandbox.commands.run(
                command,
                background=True,
                cwd=_path(cwd or "."),
                timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
            )
        except Exception as err:
            raise _mapped(self._sdk, err) from err
        try:
            result = await handle.wait()
            exit_code, stdout, stderr, timed_out = (
                result.exit_code,
                result.stdout,
                result.stderr,
                False,
            )
        except asyncio.CancelledError:
            # An interrupt: the command must not go on running in the VM.
            with contextlib.suppress(Exception):
                await asyncio.shield(handle.kill())
            raise
        except self._sdk.CommandExitException as err:
            exit_code, stdout, stderr, timed_out = err.exit_code, err.stdout, err.stderr, False
        except self._sdk.TimeoutException:
            with contextlib.suppress(Exception):
                await handle.kill()
            exit_code, stdout, stderr, timed_out = 124, "", "", True
        except Exception as err:
            raise _mapped(self._sdk, err) from err
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout or "",
            stderr=stderr or "",
            timed_out=timed_out,
            duration_ms=int((loop.time() - started) * 1000),
        )

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
        data = bytearray()

        def take(chunk: bytes) -> bool:
            data.extend(chunk)
            return len(data) <= max_bytes

        await self._stream(path, take)
        if len(data) > max_bytes:
            raise FileTooLarge(
                f"{path!r} is more than {max_bytes} bytes, more than is read whole",
                limit=max_bytes,
            )
        return data.decode("utf-8", "replace")

    async def read_lines(
        self,
        path: str,
        *,
        offset: int = 1,
        limit: int,
        max_bytes: int,
        scan_bytes: int = DEFAULT_SCAN_BYTES,
    ) -> FileLines:
        window = LineWindow(offset=offset, limit=limit, max_bytes=max_bytes, scan_bytes=scan_bytes)

        def take(chunk: bytes) -> bool:
            window.feed(chunk)
            return window.wants_more

        eof = await self._stream(path, take)
        return window.result(eof=eof)

    async def _stream(self, path: str, take: Callable[[bytes], bool]) -> bool:
        """Download a file chunk by chunk (never whole) into `take` until it returns
        False; True if the file ended first."""
        where = _path(path)
        try:
            stream = await self._sandbox.files.read(where, format="stream")
        except Exception as err:
            raise _file_error(self._sdk, err, path) from err
        try:
            async for chunk in stream:
                if not take(bytes(chunk)):
                    return False
            return True
        except Exception as err:
            raise _mapped(self._sdk, err) from err
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def write_file(self, path: str, content: str) -> None:
        try:
            await self._sandbox.files.write(_path(path), content)
        except Exception as err:
            raise _file_error(self._sdk, err, path) from err

    async def list_files(
        self,
        path: str,
        depth: int,
        *,
        max_entries: int = DEFAULT_MAX_LIST_ENTRIES,
        seconds: float = DEFAULT_LIST_SECONDS,
    ) -> FileListing:
        """Walked by `find` in the VM, never E2B's own listing: that one sends the whole
        tree back into the worker's memory. `head` keeps one entry past the cap and
        `timeout` stops the walk, so what comes back is bounded however big the tree."""
        # Relative to the home directory, where commands start.
        base = posixpath.relpath(_path(path), HOME)
        result = await self.exec(
            _listing_script(base, depth, max_entries + 1, seconds), timeout=seconds + 10
        )
        if result.exit_code == _NO_DIRECTORY:
            raise FileNotFoundError(f"no directory {path!r} in the workspace")
        entries: list[FileEntry] = []
        for record in result.stdout.split("\0"):
            kind, _, rest = record.partition(" ")
            size, _, name = rest.partition(" ")
            if not name:
                continue
            entries.append(
                FileEntry(
                    path=name if base == "." else f"{base}/{name}",
                    is_dir=kind == "d",
                    size=0 if kind == "d" else int(size or 0),
                )
            )
        cut: ListingCut | None = "time" if result.stderr.strip() == "time" else None
        if len(entries) > max_entries:
            del entries[max_entries:]
            cut = "entries"
        # `find` goes depth first in directory order, parents first: sorting by
        # components keeps parents first and orders each directory by name.
        entries.sort(key=lambda e: e.path.split("/"))
        return FileListing(entries=entries, cut=cut)

    async def status(self) -> SandboxStatus:
        try:
            info = await self._sandbox.get_info()
        except Exception as err:
            mapped = _mapped(self._sdk, err)
            if isinstance(mapped, SandboxNotFound):
                return SandboxStatus.STOPPED
            raise mapped from err
        state = str(getattr(info.state, "value", info.state))
        return SandboxStatus.PAUSED if state == "paused" else SandboxStatus.RUNNING

    async def pause(self) -> None:
        try:
            await self._sandbox.pause()
        except Exception as err:
            raise _mapped(self._sdk, err) from err

    async def kill(self) -> None:
        try:
            await self._sandbox.kill()
        except Exception as err:
            mapped = _mapped(self._sdk, err)
            if not isinstance(mapped, SandboxNotFound):
                raise mapped from err


# The sandbox's metadata key naming its owner (`sessionflow.ids.sandbox_owner`), set at
# create and checked at connect, so one tenant cannot attach to another's sandbox.
OWNER_KEY = "sessionflow-owner"


class E2BSandboxBackend:
    """Sandboxes on E2B. `sdk` defaults to the `e2b` package (tests pass a fake)."""

    name = "e2b"

    def __init__(
        self,
        *,
        template: str | None = None,
        timeout_seconds: int = 3600,
        metadata: dict[str, str] | None = None,
        api_key: str | None = None,
        sdk: Any = None,
    ) -> None:
        self._template = template
        self._timeout = timeout_seconds
        self._metadata = metadata or {"created-by": "sessionflow"}
        # E2B_API_KEY, from the settings through the registry.
        self._api_key = api_key or None
        self._sdk = sdk or importlib.import_module("e2b")

    async def create(self, *, owner: str) -> E2BSandbox:
        try:
            sandbox = await self._sdk.AsyncSandbox.create(
                template=self._template,
                timeout=self._timeout,
                metadata={**self._metadata, OWNER_KEY: owner},
                api_key=self._api_key,
            )
        except Exception as err:
            raise _mapped(self._sdk, err) from err
        return E2BSandbox(self._sdk, sandbox)

    async def connect(self, sandbox_id: str, *, owner: str | None = None) -> E2BSandbox:
        """Attach to a sandbox; a paused one is resumed by E2B on connect. With `owner`,
        a sandbox whose metadata names another owner is "not found"."""
        try:
            if owner is not None:
                info = await self._sdk.AsyncSandbox.get_info(sandbox_id, api_key=self._api_key)
                if (info.metadata or {}).get(OWNER_KEY) != owner:
                    raise SandboxNotFound(f"no sandbox {sandbox_id!r}")
            sandbox = await self._sdk.AsyncSandbox.connect(sandbox_id, api_key=self._api_key)
        except SandboxNotFound:
            raise
        except Exception as err:
            raise _mapped(self._sdk, err) from err
        return E2BSandbox(self._sdk, sandbox)
