"""The file tools against a hostile sandbox: races, planted symlinks, huge files.

What runs in a sandbox may rearrange its workspace at any moment, plant symlinks to
anything, and leave files far larger than a worker's memory. None of that may let a
Read, Write, Edit, List or Grep reach outside the workspace, or blow up the worker.
These run the local backend directly (and the tools with a bare `ToolContext`): no
Temporal needed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sessionflow.agents.builtin import edit_tool, grep_tool, list_tool, read_tool, write_tool
from sessionflow.agents.tools import Tool, ToolContext
from sessionflow.errors import FileTooLarge, SandboxRefused
from sessionflow.ids import sandbox_owner
from sessionflow.sandbox import workspace_files
from sessionflow.sandbox.e2b import E2BSandboxBackend
from sessionflow.sandbox.lines import LineWindow
from sessionflow.sandbox.local import LocalSandbox, LocalSandboxBackend
from tests.fake_e2b import FakeE2B

SECRET = "TOP-SECRET-OUTSIDE"


@pytest.fixture(params=["openat2", "walk"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with openat2 and with the component walk used without it."""
    if request.param == "openat2":
        if not workspace_files.openat2.available:
            pytest.skip("openat2 is not available here")
    else:
        monkeypatch.setattr(workspace_files.openat2, "_syscall", None)
    return str(request.param)


@pytest.fixture
async def sandbox(tmp_path: Path, resolution: str) -> LocalSandbox:
    return await LocalSandboxBackend(tmp_path / "sandboxes").create(owner=sandbox_owner(""))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the sandboxes, with a secret in it."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret.txt").write_text(SECRET)
    (place / "edit.txt").write_text("edit me")
    (place / "outside-only.txt").write_text(SECRET)
    return place


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in directory.iterdir()}


def context(sandbox: LocalSandbox) -> ToolContext:
    return ToolContext(session_id="s-attack", tool_call_id="call", sandbox=sandbox, messages=[])


async def call(tool: Tool[Any], sandbox: LocalSandbox, **arguments: Any) -> Any:
    args: BaseModel = tool.input_schema.model_validate(arguments)
    return await tool.execute(args, context(sandbox))


async def refused(awaitable: Awaitable[Any]) -> str:
    """The error text of a call that must fail."""
    try:
        result = await awaitable
    except (SandboxRefused, FileNotFoundError, ValueError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    raise AssertionError(f"not refused; returned {result!r}")


# --- (a) a directory swapped for a symlink while the tools run --------------------------


# Exchanges two names atomically (renameat2 RENAME_EXCHANGE) until told to stop.
_SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, stop = (os.fsencode(arg) for arg in sys.argv[1:])
swaps = 0
while not os.path.exists(stop):
    for _ in range(100):
        if libc.renameat2(-100, a, -100, b, 2) != 0:
            sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
        swaps += 1
print(swaps)
"""


class Swapper:
    """Exchanges `<workspace>/sub` (a directory) and `<workspace>/sub_link` (a symlink
    to the outside directory) as fast as it can, from another process, as an attacker
    in the sandbox would. An even number of swaps leaves `sub` a directory again."""

    def __init__(self, workspace: Path, outside: Path) -> None:
        os.symlink(outside, workspace / "sub_link")
        self._stop = workspace.parent / f"{workspace.name}.stop"
        self._argv = [sys.executable, "-c", _SWAPPER, str(workspace / "sub"),
                      str(workspace / "sub_link"), str(self._stop)]  # fmt: skip
        self.swaps = 0

    def __enter__(self) -> Swapper:
        self._process = subprocess.Popen(self._argv, stdout=subprocess.PIPE, text=True)
        time.sleep(0.05)  # under way before the tools start
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.touch()
        out = self._process.communicate(timeout=10)[0]
        assert self._process.returncode == 0, out
        self.swaps = int(out)


async def test_a_directory_swapped_for_a_symlink_never_leads_a_read_or_write_outside(
    sandbox: LocalSandbox, outside: Path
) -> None:
    workspace = sandbox.workspace
    (workspace / "sub").mkdir()
    (workspace / "sub" / "secret.txt").write_text("inside")
    (workspace / "sub" / "edit.txt").write_text("edit me")
    before = snapshot(outside)
    outcomes: Counter[str] = Counter()
    leaks: list[str] = []

    async def attempt(kind: str, op: Callable[[], Awaitable[Any]]) -> None:
        try:
            result = await op()
        except (SandboxRefused, OSError, ValueError) as err:  # refused, or found missing
            outcomes[f"{kind} refused ({type(err).__name__})"] += 1
            return
        outcomes[f"{kind} done"] += 1
        if SECRET in repr(result) or "outside-only" in repr(result):
            leaks.append(f"{kind}: {result!r}"[:200])

    def read(i: int) -> Callable[[], Awaitable[Any]]:
        match i % 3:
            case 0:
                return lambda: sandbox.read_file("sub/secret.txt")
            case 1:
                return lambda: sandbox.read_lines("sub/secret.txt", limit=10, max_bytes=1000)
            case _:
                return lambda: call(read_tool(), sandbox, path="sub/secret.txt")

    def write(i: int) -> Callable[[], Awaitable[Any]]:
        match i % 4:
            case 0:
                return lambda: sandbox.write_file(f"sub/w{i}.txt", "x")
            case 1:  # directories made on the way (mkdir -p)
                return lambda: sandbox.write_file(f"sub/d{i}/deeper/w.txt", "x")
            case 2:
                return lambda: call(write_tool(), sandbox, path="sub/secret.txt", content="w")
            case _:
                return lambda: call(
                    edit_tool(), sandbox, path="sub/edit.txt", old_string="edit", new_string="edit"
                )

    ops = [attempt("read", read(i)) for i in range(3000)]
    ops += [attempt("write", write(i)) for i in range(3000)]
    ops += [attempt("list", lambda: sandbox.list_files("sub", 3)) for _ in range(300)]
    ops += [attempt("list", lambda: call(list_tool(), sandbox, path=".", depth=3))
            for _ in range(100)]  # fmt: skip
    ops += [attempt("grep", lambda: call(grep_tool(), sandbox, pattern=SECRET, path="sub"))
            for _ in range(40)]  # fmt: skip
    started = time.monotonic()
    with Swapper(workspace, outside) as swapper:
        await asyncio.gather(*ops)
    elapsed = time.monotonic() - started
    escaped = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    escaped = [p for p in escaped if p not in before]
    print(f"\n{elapsed:.1f}s, {swapper.swaps} swaps: {dict(sorted(outcomes.items()))}")
    print(f"leaked reads/lists/greps: {len(leaks)}; files made outside: {len(escaped)}")

    assert leaks == []
    assert snapshot(outside) == before  # nothing created, written or edited there
    # The race was real: the same paths both worked and were refused as `sub` flipped.
    assert swapper.swaps > 1000
    assert outcomes["read done"] > 0 and outcomes["write done"] > 0
    assert sum(n for k, n in outcomes.items() if k.startswith("read refused")) > 0
    assert sum(n for k, n in outcomes.items() if k.startswith("write refused")) > 0


# --- (b) symlinks planted in the workspace ----------------------------------------------


@pytest.fixture
def planted(sandbox: LocalSandbox, outside: Path) -> Iterator[Path]:
    workspace = sandbox.workspace
    (workspace / "src").mkdir()
    (workspace / "src" / "ok.txt").write_text("fine\n")
    os.symlink("/etc", workspace / "etc_link")
    os.symlink(outside, workspace / "out_link")
    os.symlink(outside / "secret.txt", workspace / "file_link")
    os.symlink("src", workspace / "inner_link")  # points inside: refused all the same
    os.mkfifo(workspace / "fifo")
    before = snapshot(outside)
    yield outside
    assert snapshot(outside) == before


async def test_planted_symlinks_are_refused_by_every_file_tool(
    sandbox: LocalSandbox, planted: Path
) -> None:
    through: list[tuple[str, Tool[Any], dict[str, Any]]] = [
        ("Read", read_tool(), {"path": "etc_link/passwd"}),
        ("Read", read_tool(), {"path": "out_link/secret.txt"}),
        ("Read", read_tool(), {"path": "file_link"}),
        ("Read", read_tool(), {"path": "inner_link/ok.txt"}),
        ("Write", write_tool(), {"path": "out_link/new.txt", "content": "x"}),
        ("Write", write_tool(), {"path": "out_link/secret.txt", "content": "x"}),
        ("Write", write_tool(), {"path": "out_link/made/dir/x.txt", "content": "x"}),
        ("Write", write_tool(), {"path": "file_link", "content": "x"}),
        ("Edit", edit_tool(), {"path": "out_link/edit.txt", "old_string": "edit", "new_string": "x"}),
        ("Edit", edit_tool(), {"path": "file_link", "old_string": SECRET, "new_string": "x"}),
        ("List", list_tool(), {"path": "etc_link"}),
        ("List", list_tool(), {"path": "out_link"}),
        ("Grep", grep_tool(), {"pattern": "root", "path": "etc_link"}),
        ("Grep", grep_tool(), {"pattern": SECRET, "path": "out_link"}),
        ("Grep", grep_tool(), {"pattern": SECRET, "path": "out_link/secret.txt"}),
        ("Grep", grep_tool(), {"pattern": SECRET, "path": "file_link"}),
        ("Grep", grep_tool(), {"pattern": "fine", "path": "inner_link"}),
    ]  # fmt: skip
    for name, tool, arguments in through:
        error = await refused(call(tool, sandbox, **arguments))
        assert "symlink" in error, (name, arguments, error)
        assert "root:" not in error and SECRET not in error
    assert not (planted / "new.txt").exists() and not (planted / "made").exists()


async def test_searching_and_listing_the_whole_workspace_stays_inside(
    sandbox: LocalSandbox, planted: Path
) -> None:
    assert await call(grep_tool(), sandbox, pattern="root:") == "no matches"
    assert await call(grep_tool(), sandbox, pattern=SECRET) == "no matches"
    assert await call(grep_tool(), sandbox, pattern="fine") == "src/ok.txt:1:fine"
    listing = await sandbox.list_files(".", 5)
    assert listing.cut is None
    paths = {entry.path: entry for entry in listing.entries}
    assert set(paths) == {"etc_link", "out_link", "file_link", "inner_link", "fifo", "src",
                          "src/ok.txt"}  # fmt: skip
    assert not paths["etc_link"].is_dir and not paths["out_link"].is_dir  # links, not entered


async def test_dotdot_absolute_paths_and_fifos_are_refused(
    sandbox: LocalSandbox, planted: Path
) -> None:
    attempts: list[tuple[Tool[Any], dict[str, Any], str]] = [
        (read_tool(), {"path": "../outside/secret.txt"}, "leads outside the workspace"),
        (read_tool(), {"path": "src/../../outside/secret.txt"}, "leads outside the workspace"),
        (read_tool(), {"path": "/etc/passwd"}, "is absolute"),
        (read_tool(), {"path": str(planted / "secret.txt")}, "is absolute"),
        (write_tool(), {"path": "../escape.txt", "content": "x"}, "leads outside the workspace"),
        (write_tool(), {"path": "/tmp/escape.txt", "content": "x"}, "is absolute"),
        (edit_tool(), {"path": "../outside/edit.txt", "old_string": "e", "new_string": "x"},
         "leads outside the workspace"),
        (list_tool(), {"path": ".."}, "leads outside the workspace"),
        (list_tool(), {"path": "/"}, "is absolute"),
        (grep_tool(), {"pattern": "x", "path": "../"}, "leads outside the workspace"),
        (grep_tool(), {"pattern": "x", "path": "/etc"}, "leads outside the workspace"),
        # A FIFO would hang a reader or writer: it is not a regular file.
        (read_tool(), {"path": "fifo"}, "no file 'fifo'"),
        (write_tool(), {"path": "fifo", "content": "x"}, "not a regular file"),
        (grep_tool(), {"pattern": "x", "path": "fifo"}, "no file or directory 'fifo'"),
    ]  # fmt: skip
    for tool, arguments, expected in attempts:
        error = await asyncio.wait_for(refused(call(tool, sandbox, **arguments)), 10)
        assert expected in error, (tool.name, arguments, error)
    assert not (sandbox.workspace.parent / "escape.txt").exists()
    assert not Path("/tmp/escape.txt").exists()
    # What stays inside still works, `..` included.
    assert await call(read_tool(), sandbox, path="src/../src/ok.txt") == "     1\tfine"


# --- (c) a file far larger than the worker's memory -------------------------------------


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1]) / 1024


async def peak_growth(op: Awaitable[Any]) -> tuple[Any, float, float]:
    """Run `op`, sampling the process's RSS meanwhile: (outcome, growth MiB, seconds)."""
    baseline = rss_mib()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        outcome: Any = await op
    except Exception as err:
        outcome = err
    finally:
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
    peak = max(peak, rss_mib())
    return outcome, peak - baseline, elapsed


@pytest.fixture
def huge(sandbox: LocalSandbox) -> str:
    """A 512 MiB sparse file: nothing on disk, everything to a reader."""
    with (sandbox.workspace / "huge.bin").open("wb") as file:
        file.truncate(512 * 1024 * 1024)
    return "huge.bin"


async def test_reading_a_512_mib_file_is_quick_and_bounded(
    sandbox: LocalSandbox, huge: str
) -> None:
    output, growth, elapsed = await peak_growth(call(read_tool(), sandbox, path=huge))
    print(f"\nRead: +{growth:.1f} MiB in {elapsed:.2f}s")
    assert isinstance(output, str), output
    assert growth < 50 and elapsed < 5
    marker = output.splitlines()[-1]
    assert marker.startswith("[truncated: showing lines 1-1;")
    assert "too large to count" in marker and "only its start is shown" in marker
    assert marker.endswith("read more with offset=2]")
    assert len(output) < 110_000

    # Further on is past what Read looks at: it says so, and what to use instead.
    error, growth, elapsed = await peak_growth(call(read_tool(), sandbox, path=huge, offset=2))
    assert isinstance(error, ValueError) and "use Bash" in str(error)
    assert growth < 50 and elapsed < 5


async def test_editing_a_512_mib_file_is_refused_without_reading_it(
    sandbox: LocalSandbox, huge: str
) -> None:
    edit = call(edit_tool(), sandbox, path=huge, old_string="a", new_string="b")
    error, growth, elapsed = await peak_growth(edit)
    print(f"\nEdit: +{growth:.1f} MiB in {elapsed:.2f}s")
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{huge} is 536870912 bytes; Edit edits files of up to 1048576")
    assert "nothing was changed" in str(error)
    assert growth < 50 and elapsed < 1
    error, growth, _ = await peak_growth(sandbox.read_file(huge))
    assert isinstance(error, FileTooLarge) and error.size == 512 * 1024 * 1024
    assert growth < 50


async def test_write_and_edit_cap_what_they_write(sandbox: LocalSandbox) -> None:
    error = await refused(call(write_tool(), sandbox, path="big.txt", content="x" * (1 << 20 | 1)))
    assert "Write writes at most 1048576 bytes" in error
    assert not (sandbox.workspace / "big.txt").exists()
    await call(write_tool(), sandbox, path="a.txt", content="a" * 100_000)
    grow = call(edit_tool(), sandbox, path="a.txt", old_string="a", new_string="a" * 100,
                replace_all=True)  # fmt: skip
    error = await refused(grow)
    assert "would make a.txt 10000000 bytes" in error
    assert (sandbox.workspace / "a.txt").stat().st_size == 100_000


async def test_grep_output_is_bounded(sandbox: LocalSandbox) -> None:
    long_line = "match " + "x" * 200_000 + "\n"
    await sandbox.write_file("long.txt", long_line * 4)
    await sandbox.write_file("many.txt", "match\n" * 600)
    await sandbox.write_file("more.txt", "match\n" * 10_000)
    output = await call(grep_tool(), sandbox, pattern="match")
    assert len(output) < 60_000
    assert output.splitlines()[-1].endswith("; narrow the search]")
    long = await call(grep_tool(), sandbox, pattern="match", path="long.txt")
    assert long.splitlines()[0] == "1:match " + "x" * 992 + " [line cut]"
    assert long.splitlines()[-1] == "[output cut at 48 KiB; narrow the search]"
    many = await call(grep_tool(), sandbox, pattern="match", path="many.txt")
    assert many.splitlines()[0] == "1:match"
    assert many.splitlines()[-1] == "[100 more lines; narrow the search]"
    assert await call(grep_tool(), sandbox, pattern="match", path="many.txt", glob="*.py") == (
        "no matches"
    )
    more = await call(grep_tool(), sandbox, pattern="match", path="more.txt")
    assert more.splitlines()[-1].endswith(
        "more lines, and more past 48 KiB of output; narrow the search]"
    )


async def test_e2b_reads_stream_and_stop(tmp_path: Path) -> None:
    fake = FakeE2B(tmp_path / "e2b")
    backend = E2BSandboxBackend(sdk=fake, api_key="e2b-test-key")
    sandbox = await backend.create(owner=sandbox_owner(""))
    with (fake.home(sandbox.id) / "huge.bin").open("wb") as file:
        file.truncate(512 * 1024 * 1024)
    (fake.home(sandbox.id) / "notes.txt").write_text("one\ntwo\r\nthree")
    window, growth, elapsed = await peak_growth(
        sandbox.read_lines("huge.bin", limit=10, max_bytes=1000, scan_bytes=8 << 20)
    )
    assert window.cut and window.total_lines is None and len(window.lines[0]) == 1000
    assert growth < 50 and elapsed < 5
    error, growth, _ = await peak_growth(sandbox.read_file("huge.bin", max_bytes=1 << 20))
    assert isinstance(error, FileTooLarge) and growth < 50
    notes = await sandbox.read_lines("notes.txt", offset=2, limit=5, max_bytes=100)
    assert (notes.lines, notes.total_lines) == (["two", "three"], 3)


# --- the bounded line reader itself ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "a", "a\n", "a\nb", "a\r\nb\r\n", "\n\n\n", "one\ntwo\nthree\n", "é\nü\n" * 50],
)
@pytest.mark.parametrize("chunk", [1, 3, 64 * 1024])
def test_the_line_window_numbers_lines_as_sed_does(text: str, chunk: int) -> None:
    expected = text.replace("\r\n", "\n").split("\n")
    if expected[-1] == "":
        expected.pop()
    data = text.encode()
    for offset in (1, 2, 5):
        window = LineWindow(offset=offset, limit=3, max_bytes=1000, scan_bytes=1 << 20)
        for start in range(0, len(data), chunk):
            window.feed(data[start : start + chunk])
        result = window.result(eof=True)
        assert result.lines == expected[offset - 1 : offset + 2]
        assert result.total_lines == len(expected)
        assert not result.cut


def test_the_line_window_cuts_long_lines_and_stops_scanning() -> None:
    window = LineWindow(offset=1, limit=5, max_bytes=10, scan_bytes=1 << 20)
    window.feed(("short\n" + "é" * 20 + "\nlast\n").encode())
    assert window.result(eof=True).lines == ["short"]  # the long one is left for later
    window = LineWindow(offset=2, limit=5, max_bytes=7, scan_bytes=1 << 20)
    window.feed(("short\n" + "é" * 20 + "\nlast\n").encode())
    result = window.result(eof=True)
    assert (result.lines, result.cut, result.total_lines) == (["ééé"], True, 3)
    window = LineWindow(offset=1, limit=5, max_bytes=10, scan_bytes=100)
    while window.wants_more:
        window.feed(b"x" * 30)
    result = window.result(eof=False)
    assert (result.lines, result.cut, result.total_lines) == (["x" * 10], True, None)
