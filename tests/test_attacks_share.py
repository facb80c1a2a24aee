"""A hostile model against its share: each test runs an attack on what one sandbox may
take from the host (memory and processes of all its processes together, disk, its
host uid's kernel counters), or on what it may see of the host (mountinfo, /etc), or
through system calls a seccomp filter forbids, and asserts that the attack failed.

These need what `.ci/run` provides (bubblewrap, root, cgroup v1 or delegated v2, loop
devices). Shares are small (tens of MiB) so the attacks are quick and safe.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from sessionflow.sandbox import cgroups, disk, seccomp
from sessionflow.sandbox.cgroups import Share, Unavailable
from sessionflow.sandbox.etc import FROM_HOST, generated
from sessionflow.sandbox.isolation import Bubblewrap, Limits
from sessionflow.sandbox.local import LocalSandboxBackend
from sessionflow.sandbox.uids import HostUids

MiB = 1024 * 1024
NEEDS = "the share attack tests need bubblewrap, root, cgroups and loop devices (.ci/run)"


def backend(root: Path, **options: object) -> LocalSandboxBackend:
    made = LocalSandboxBackend(root, **options)  # type: ignore[arg-type]
    assert isinstance(made.isolation, Bubblewrap), f"{NEEDS} ({made.effective_isolation})"
    assert made.isolation.hierarchy is not None and made.disks is not None, NEEDS
    return made


def said(result: object) -> str:
    return str(getattr(result, "stdout", "")) + str(getattr(result, "stderr", ""))


def anonymous_rss(marker: str) -> int:
    """Anonymous resident memory of the host processes whose command line holds
    `marker` (shared library pages, counted once per process by RSS, left out)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


# -- memory: all the sandbox's processes together ----------------------------------


async def test_many_processes_together_cannot_exceed_the_memory_share(tmp_path: Path) -> None:
    sandboxes = backend(tmp_path / "sandboxes", share=Share(memory_bytes=96 * MiB))
    sandbox = await sandboxes.create(owner="t")
    marker = "memory-share-hog"
    # Six processes of 64 MiB each: 384 MiB, each far below the per-process 4 GiB limit.
    hog = (
        f"python3 -c \"import sys, time; x = b'x' * (64 << 20); print('held'); sys.stdout.flush();"
        f' time.sleep(2)" {marker}'
    )
    command = (
        f'pids=; for i in 1 2 3 4 5 6; do {hog} & pids="$pids $!"; done; '
        "rc=0; for p in $pids; do wait $p || rc=$?; done; exit $rc"
    )
    running = asyncio.create_task(sandbox.exec(command, timeout=30))
    peak = 0
    while not running.done():
        peak = max(peak, anonymous_rss(marker))
        await asyncio.sleep(0.01)
    result = await running
    assert peak > 0, "the hogs were never seen running"
    assert peak <= 100 * MiB, f"{peak / MiB:.0f} MiB held by the sandbox's processes"
    assert result.exit_code != 0, said(result)
    assert result.stdout.count("held") < 6, said(result)
    assert "out of its memory share (96 MiB" in result.stderr, said(result)
    # The kernel killed the sandbox's processes, not the sandbox: the next command runs.
    after = await sandbox.exec("echo still-here")
    assert after.exit_code == 0 and after.stdout == "still-here\n", said(after)
    assert "memory share" not in after.stderr


# -- processes: counted per sandbox, across its commands -----------------------------

_FORKS = (
    "python3 -c '\nimport os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
    "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
    "        os._exit(0)\n    n += 1\nprint(n)'"
)


async def test_processes_are_counted_for_the_whole_sandbox(tmp_path: Path) -> None:
    # The per-uid process limit stays high: only the sandbox's pids share can stop these.
    sandboxes = backend(
        tmp_path / "sandboxes", limits=Limits(processes=512), share=Share(processes=24)
    )
    sandbox = await sandboxes.create(owner="t")
    alone = await sandbox.exec(_FORKS, timeout=20)
    assert 10 <= int(alone.stdout) < 24, said(alone)
    # A second command at the same time shares the same 24 with the first.
    holder = asyncio.create_task(
        sandbox.exec("for i in $(seq 14); do sleep 4 & done; wait", timeout=20)
    )
    await asyncio.sleep(1.0)
    beside = await sandbox.exec(_FORKS, timeout=20)
    await holder
    assert int(beside.stdout) < 24 - 14, said(beside)


# -- disk: the workspace is a filesystem of the share's size -------------------------


async def test_a_command_cannot_leave_more_than_the_disk_share(tmp_path: Path) -> None:
    root = tmp_path / "sandboxes"
    sandboxes = backend(root, share=Share(disk_bytes=32 * MiB))
    sandbox = await sandboxes.create(owner="t")
    fill = await sandbox.exec(
        "head -c 100M /dev/zero > big; echo big=$?; "
        "for i in 1 2 3 4 5; do head -c 8M /dev/zero > more$i; done; echo more=$?; "
        "du -sk /workspace"
    )
    assert "No space left on device" in fill.stderr, said(fill)
    assert "big=1" in fill.stdout, said(fill)
    used = sum(f.stat().st_size for f in sandbox.workspace.iterdir() if f.is_file())
    assert used <= 32 * MiB, f"{used / MiB:.1f} MiB left in the workspace"
    image = root / ".disks" / f"{sandbox.id}.ext4"
    assert image.stat().st_blocks * 512 <= 34 * MiB  # what it takes on the host's disk
    # The worker's own file writes (as root) are held to the same share.
    with pytest.raises(OSError):
        await sandbox.write_file("from-the-worker.txt", "x" * (4 * MiB))
    # Freeing space frees it; what is kept survives the worker and a reboot.
    kept = await sandbox.exec("rm -f big more*; echo kept > notes.txt && cat notes.txt")
    assert kept.stdout == "kept\n", said(kept)
    await asyncio.to_thread(subprocess.run, ["umount", str(sandbox.workspace)], check=True)
    restarted = backend(root, share=Share(disk_bytes=32 * MiB))
    again = await restarted.connect(sandbox.id, owner="t")
    assert os.path.ismount(again.workspace)
    assert (await again.exec("cat notes.txt; df -k . | tail -1")).stdout.startswith("kept\n")
    await again.kill()
    assert not image.exists() and not again.workspace.exists()


# -- host uids: one per sandbox ---------------------------------------------------------


async def test_two_sandboxes_run_as_different_host_uids(tmp_path: Path) -> None:
    uids = HostUids(1_900_000_000, 65_536)
    sandboxes = backend(tmp_path / "sandboxes", uids=uids)
    a = await sandboxes.create(owner="t")
    b = await sandboxes.create(owner="t")
    await a.exec("echo a > mine")
    await b.exec("echo b > mine")
    uid_a = (a.workspace / "mine").stat().st_uid
    uid_b = (b.workspace / "mine").stat().st_uid
    assert uid_a != uid_b
    for uid in (uid_a, uid_b):
        assert uids.base <= uid < uids.base + uids.count
    # The uid is the sandbox's own for good: a second command, and a new worker, agree.
    await a.exec("echo again > again")
    assert (a.workspace / "again").stat().st_uid == uid_a
    assert uids.of(sandboxes.root, a.id) == uid_a


async def test_one_sandbox_cannot_use_up_a_kernel_counter_of_another(tmp_path: Path) -> None:
    """inotify instances are counted per host uid (128 here by default)."""
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    assert limit < 4096, "this host's inotify limit is too high for this test"
    sandboxes = backend(tmp_path / "sandboxes")
    a = await sandboxes.create(owner="t")
    b = await sandboxes.create(owner="t")
    exhaust = (
        "python3 -c '\nimport ctypes, time\nlibc = ctypes.CDLL(None)\nn = 0\n"
        "while libc.inotify_init1(0) >= 0:\n    n += 1\nprint(n, flush=True)\ntime.sleep(3)'"
    )
    hog = asyncio.create_task(a.exec(exhaust, timeout=20))
    await asyncio.sleep(1.5)
    other = await b.exec(
        "python3 -c 'import ctypes; print(ctypes.CDLL(None).inotify_init1(0) >= 0)'"
    )
    held = await hog
    assert int(held.stdout.split()[0]) >= limit - 8, said(held)  # a took them all
    assert other.stdout.strip() == "True", said(other)


# -- what the sandbox sees of the host ----------------------------------------------


async def test_mountinfo_reveals_no_host_path_or_sandbox_id(tmp_path: Path) -> None:
    root = tmp_path / "sandboxes"
    sandbox = await backend(root).create(owner="t")
    result = await sandbox.exec("cat /proc/self/mountinfo /proc/self/mounts /proc/self/cgroup")
    assert result.exit_code == 0 and "/workspace" in result.stdout, said(result)
    for secret in (sandbox.id, str(tmp_path), str(root), "sandboxes", "pytest", ".disks"):
        assert secret not in result.stdout, secret


async def test_etc_holds_only_what_commands_need(tmp_path: Path) -> None:
    sandbox = await backend(tmp_path / "sandboxes").create(owner="t")
    listing = await sandbox.exec("ls -A /etc")
    allowed = {*generated(65534, 65534, egress=False), "mtab", "ssl", "pki"}
    allowed |= {name.split("/")[0] for name in FROM_HOST}
    seen = set(listing.stdout.split())
    assert seen <= allowed, seen - allowed
    assert {"passwd", "group", "hosts", "ld.so.cache"} <= seen
    for gone in ("shadow", "gshadow", "sudoers", "hostname.real", "machine-id", "fstab"):
        assert gone not in seen
    users = await sandbox.exec("cut -d: -f1 /etc/passwd; ls /etc/ssl; id")
    assert users.stdout.split()[:2] == ["root", "nobody"], said(users)
    assert "private" not in users.stdout.split()  # /etc/ssl has only its certificates
    assert "uid=65534(nobody)" in users.stdout
    # What commands use still works: bash, coreutils, alternatives, python3 with TLS.
    works = await sandbox.exec(
        "echo $((6 * 7)); printf 'b\\na\\n' | sort | head -1; awk 'BEGIN { print \"awk\" }'; "
        "python3 -c 'import ssl, json, getpass; "
        'print(getpass.getuser(), ssl.create_default_context().cert_store_stats()["x509_ca"] > 0)\'; '
        "(command -v git >/dev/null && git init -q repo && git -C repo status --short && "
        "echo git) || echo git"
    )
    assert works.stdout.split() == ["42", "a", "awk", "nobody", "True", "git"], said(works)


# -- system calls the seccomp filter forbids -----------------------------------------


async def test_dangerous_system_calls_fail_with_eperm(tmp_path: Path) -> None:
    arch = seccomp.host_arch()
    assert arch is not None
    sandbox = await backend(tmp_path / "sandboxes").create(owner="t")
    calls = {
        name: arch.numbers[name]
        for name in (
            "io_uring_setup", "add_key", "keyctl", "ptrace", "bpf", "perf_event_open",
            "userfaultfd", "process_vm_readv", "unshare",
        )
    }  # fmt: skip
    if arch.audit == seccomp.AUDIT_ARCH_X86_64:
        calls["x32 getpid"] = seccomp.X32_SYSCALL_BIT | 39
    script = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"for name, nr in {calls!r}.items():\n"
        "    ctypes.set_errno(0)\n"
        "    r = libc.syscall(nr, 0, 0, 0, 0, 0)\n"
        "    print(name.replace(' ', '-'), r, ctypes.get_errno())\n"
        "print('getpid', libc.getpid(), 0)\n"
    )
    result = await sandbox.exec(f"python3 - <<'EOF'\n{script}EOF")
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    for name in calls:
        assert rows[name.replace(" ", "-")] == ["-1", "1"], (name, said(result))  # EPERM
    assert int(rows["getpid"][0]) > 0  # the filter lets everything else through


# -- a host that cannot enforce the share ------------------------------------------


async def test_without_cgroups_or_disks_the_backend_refuses_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cgroups(**_: object) -> cgroups.Hierarchy:
        raise Unavailable("no cgroup v1 memory hierarchy is mounted")

    monkeypatch.setattr(cgroups, "detect", no_cgroups)
    refused = LocalSandboxBackend(tmp_path / "a")
    assert refused.effective_isolation.startswith("REFUSED"), refused.effective_isolation
    assert "no cgroup v1 memory" in refused.effective_isolation
    assert "SESSIONFLOW_SANDBOX_LIMITS=best-effort" in refused.effective_isolation
    loose = LocalSandboxBackend(tmp_path / "b", enforce="best-effort")
    assert isinstance(loose.isolation, Bubblewrap)
    assert "NO memory, process or CPU share" in loose.effective_isolation
    assert "best-effort" in loose.effective_isolation
    ran = await (await loose.create(owner="t")).exec("echo ran")
    assert ran.stdout == "ran\n"
    monkeypatch.undo()

    def no_disks(root: Path, size: int) -> disk.Disks:
        raise Unavailable("mkfs.ext4 not installed")

    monkeypatch.setattr(disk, "setup", no_disks)
    without_disk = LocalSandboxBackend(tmp_path / "c")
    assert without_disk.effective_isolation.startswith("REFUSED")
    assert "mkfs.ext4" in without_disk.effective_isolation
    loose_disk = LocalSandboxBackend(tmp_path / "d", enforce="best-effort")
    assert "NO disk share" in loose_disk.effective_isolation


async def test_the_worker_start_line_says_which_share_is_in_force(tmp_path: Path) -> None:
    from sessionflow.config import Settings
    from sessionflow.sandbox.registry import backend_from_settings

    settings = Settings.from_env(
        {
            "SESSIONFLOW_SANDBOX_ROOT": str(tmp_path),
            "SESSIONFLOW_SANDBOX_MEMORY_MB": "300",
            "SESSIONFLOW_SANDBOX_CPU_PERCENT": "50",
            "SESSIONFLOW_SANDBOX_DISK_MB": "100",
            "SESSIONFLOW_SANDBOX_MAX_PROCESSES": "77",
        }
    )
    line = getattr(backend_from_settings(settings), "effective_isolation", "")
    assert "share per sandbox (cgroup v" in line, line
    assert "300 MiB memory, 77 processes, 50% of a CPU" in line
    assert "disk share: 100 MiB ext4 image per workspace" in line
    assert "a seccomp filter" in line and "a host uid per sandbox" in line


def test_cpu_share_is_written_for_the_sandbox(tmp_path: Path) -> None:
    hierarchy = cgroups.detect()
    command = hierarchy.prepare(f"cpu-{os.getpid()}-{time.monotonic_ns()}", Share(cpu_percent=50))
    try:
        group = next(g for g in command.sandbox if g.parent == hierarchy.parents["cpu"])
        if hierarchy.version == 2:
            assert (group / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            assert (group / "cpu.cfs_quota_us").read_text().strip() == "50000"
    finally:
        command.remove()
    assert not any(g.exists() for g in command.sandbox)
