"""How the local sandbox confines a command: bubblewrap, resource limits, network.

Whatever runs in a sandbox is treated as an attacker's (DESIGN rule 8). Under
bubblewrap (`bwrap`, 0.8 or later) a command gets

- its own user, pid, network, IPC, UTS and cgroup namespaces: it sees only its own
  processes (a fresh `/proc`), has only a private loopback (no route to the worker's
  Redis, Temporal or gateway), and cannot create further user namespaces;
- uid and gid 65534 with no capabilities and `no_new_privs`; on the host it is an
  unprivileged uid too (the worker's own uid, or `host_uid` when the worker is root);
- only the system directories (`/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`), read-only,
  its workspace read-write at `/workspace` (its home and working directory, so no
  path reveals its id or other workspaces), size-limited tmpfs at `/tmp` and
  `/dev/shm`, a minimal `/dev`; everything else (`/root`, `/home`, `/var`, `/opt`, the
  data directory with Redis' AOF and Temporal's database, other workspaces) is absent;
- an environment rebuilt from an allow-list (`--clearenv`), so no worker secret;
- resource limits (processes, address space, CPU seconds, file size, open files);
- a new session (`setsid`: no terminal injection), and death with its parent: when
  the command ends, times out or is interrupted, its pid namespace goes with it, so
  nothing it started (daemons, `setsid`, `nohup`) survives.

Why two bubblewraps when the worker runs as root: bubblewrap (not installed setuid)
never changes the kernel's uid, so a sandbox started by root is host root inside its
user namespace (reading root-only files, and exempt from RLIMIT_NPROC, which the
kernel does not enforce for uid 0). An outer bubblewrap, as root, only builds a mount
namespace holding the system directories and the workspace (root can reach a
workspace under a private directory); `setpriv` then drops to `host_uid` for good, and
the inner, unprivileged bubblewrap builds the sandbox proper. A non-root worker runs
the inner one directly.

Why the limits are set inside the sandbox (bash's `ulimit`, before the command is
exec'd) rather than in a `preexec_fn`: that hook is unsafe in a threaded worker, and
a limit in force when the user namespace is created also caps the count of all the
host uid's processes (every sandbox's) rather than just this command's.

Network: `none` (default) is a private loopback only. `egress` gives the command a
user-mode network stack (`slirp4netns --disable-host-loopback`) in a namespace of its
own: it reaches what the host can reach except the host's loopback (127.0.0.1, where
the local stack's Redis and Temporal listen). It still reaches the host's other
addresses and its networks: keep Redis, Temporal and the gateway off them (or
firewalled) before turning egress on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sessionflow.errors import SandboxRefused
from sessionflow.sandbox import cgroups, etc, seccomp
from sessionflow.sandbox.cgroups import Hierarchy, Share
from sessionflow.sandbox.uids import HostUids

ISOLATION_MODES = ("bubblewrap", "none")
NETWORK_MODES = ("none", "egress")
# SESSIONFLOW_SANDBOX_LIMITS: refuse a host that cannot enforce a sandbox's share and
# seccomp filter ("kernel"), or run without what it lacks ("best-effort").
ENFORCE_MODES = ("kernel", "best-effort")
# The uid and gid a command has inside the sandbox.
SANDBOX_UID = SANDBOX_GID = 65534
# Where the workspace is, as a sandboxed command sees it.
WORKSPACE = "/workspace"
# Host directories a sandbox sees, read-only, each if it exists; nothing else of the host.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables a command may inherit from the worker; everything else is dropped.
ENV_ALLOW_LIST = ("PATH", "LANG", "TERM", "TZ")
ENV_ALLOW_PREFIXES = ("LC_",)
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install bubblewrap)"
_PROBE_TIMEOUT = 15.0
_NETWORK_SETUP_TIMEOUT = 10.0
_MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one command may use; each applies to every process it starts (`processes`
    counts all of the command's processes and threads together)."""

    processes: int = 512
    memory_bytes: int = 4096 * _MiB  # address space of each process (RLIMIT_AS)
    cpu_seconds: int = 600  # CPU time of each process (RLIMIT_CPU)
    file_bytes: int = 1024 * _MiB  # largest file a process may write (RLIMIT_FSIZE)
    open_files: int = 4096  # RLIMIT_NOFILE
    tmp_bytes: int = 256 * _MiB  # the /tmp tmpfs (and at most 64 MiB of /dev/shm)

    def __post_init__(self) -> None:
        for name in ("processes", "memory_bytes", "cpu_seconds", "file_bytes", "open_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"sandbox limit {name} must be positive")
        if self.tmp_bytes < _MiB:
            raise ValueError("sandbox limit tmp_bytes must be at least 1 MiB")

    @property
    def shm_bytes(self) -> int:
        return min(self.tmp_bytes, 64 * _MiB)

    def ulimit(self, *, processes: bool = True) -> str:
        """bash's `ulimit` setting these as soft and hard limits (bash counts -v and -f
        in KiB). The hard limits cannot be raised again without CAP_SYS_RESOURCE."""
        flags = [
            f"-v {max(1, self.memory_bytes // 1024)}",
            f"-t {self.cpu_seconds}",
            f"-f {max(1, self.file_bytes // 1024)}",
            f"-n {self.open_files}",
        ]
        if processes:
            flags.insert(0, f"-u {self.processes}")
        return "ulimit -S -H " + " ".join(flags)

    def describe(self) -> str:
        return (
            f"{self.processes} processes, {self.memory_bytes // _MiB} MiB address space, "
            f"{self.cpu_seconds} s CPU, {self.file_bytes // _MiB} MiB per file, "
            f"{self.open_files} open files, {self.tmp_bytes // _MiB} MiB /tmp"
        )


def environment(home: str, pwd: str, *, path: str | None = None) -> dict[str, str]:
    """A command's environment: the worker's allow-listed variables, nothing else."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ENV_ALLOW_LIST or k.startswith(ENV_ALLOW_PREFIXES)
    }
    if path is not None:
        env["PATH"] = path
    env.setdefault("PATH", SANDBOX_PATH)
    env["HOME"] = home
    env["PWD"] = pwd
    return env


def _shell(limits: Limits, command: str, *, processes: bool) -> list[str]:
    """bash that sets the limits, then becomes the command's own shell."""
    prologue = f'{limits.ulimit(processes=processes)} || exit 126; exec /bin/bash -c "$1"'
    return ["/bin/bash", "-c", prologue, "sessionflow-sandbox", command]


class Isolation(Protocol):
    """How commands run: `spawn` starts one with stdout and stderr piped and, when the
    context ends, leaves nothing of it running."""

    @property
    def description(self) -> str: ...

    def spawn(
        self, workspace: Path, workdir: Path, command: str
    ) -> contextlib.AbstractAsyncContextManager[Running]: ...

    def release(self, workspace: Path) -> None:
        """Forget what the sandbox of `workspace` held (it is gone for good)."""
        ...


@dataclass
class Running:
    """A started command: its host process (stdout and stderr piped) and how to end it
    with everything it started (also done when `spawn`'s context ends); its sandbox's
    cgroup, if it has one, to tell whether the memory share ran out."""

    proc: asyncio.subprocess.Process
    init: _Process | None = None
    group: cgroups.Command | None = None
    share: Share | None = None
    oom_before: int = 0

    def share_note(self) -> str:
        """A line for the command's stderr when the kernel killed a process of the
        sandbox for its memory share while the command ran ("" otherwise)."""
        if self.group is None or self.share is None:
            return ""
        if self.group.oom_kills() <= self.oom_before:
            return ""
        return (
            f"[sandbox: out of its memory share ({self.share.memory_bytes // _MiB} MiB for "
            "all its processes): the kernel killed a process]"
        )

    async def kill(self) -> None:
        _kill_group(self.proc.pid)
        if self.init is not None:
            await self.init.kill_and_wait()
        await self.proc.wait()


@dataclass(frozen=True)
class Refused:
    """Isolation that could not be set up: every use is refused, saying why."""

    reason: str

    @property
    def description(self) -> str:
        return f"REFUSED: {self.reason}"

    def release(self, workspace: Path) -> None:
        return None

    def refuse(self) -> SandboxRefused:
        return SandboxRefused(f"the local sandbox refuses to run commands: {self.reason}")

    @contextlib.asynccontextmanager
    async def spawn(self, workspace: Path, workdir: Path, command: str) -> AsyncIterator[Running]:
        raise self.refuse()
        yield  # pragma: no cover


@dataclass(frozen=True)
class Unconfined:
    """`SESSIONFLOW_SANDBOX_ISOLATION=none`: `bash -c` in its own process group with the
    clean environment and the limits (but the process count, which would count the
    worker's own), and nothing else. For trusted code only."""

    limits: Limits

    def release(self, workspace: Path) -> None:
        return None

    @property
    def description(self) -> str:
        return (
            "NONE (SESSIONFLOW_SANDBOX_ISOLATION=none): commands run as the worker's user "
            "with its network, filesystem and processes in reach; only the environment is "
            f"cleaned and limits applied ({self.limits.describe()}, processes not counted)"
        )

    @contextlib.asynccontextmanager
    async def spawn(self, workspace: Path, workdir: Path, command: str) -> AsyncIterator[Running]:
        proc = await asyncio.create_subprocess_exec(
            *_shell(self.limits, command, processes=False),
            cwd=workdir,
            env=environment(str(workspace), str(workdir)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        running = Running(proc)
        try:
            yield running
        finally:
            await running.kill()


def _system_binds(flag: str = "--ro-bind", *, with_etc: bool = True) -> list[str]:
    """The system directories as on the host: a symlink (`/bin -> usr/bin`) stays one.
    `with_etc=False` leaves out /etc, which `sandbox.etc` builds instead."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if path == "/etc" and not with_etc:
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += [flag, path, path]
    return args


@dataclass(frozen=True)
class Bubblewrap:
    """Commands in bubblewrap (see the module's docstring).

    `uids`: when the worker runs as root, the range of unprivileged host uids (and
    gids alike) sandboxes run as, one each (`setpriv` drops to it); None when the
    worker is not root and commands run as its uid. `slirp4netns` is needed for
    `network="egress"`. `hierarchy` holds each sandbox to `share` (None: not held).
    `seccomp`: the filter program every command runs under.
    """

    bwrap: str
    limits: Limits
    network: str = "none"
    uids: HostUids | None = None
    setpriv: str | None = None
    slirp4netns: str | None = None
    share: Share = field(default_factory=Share)
    hierarchy: Hierarchy | None = None
    seccomp: bytes | None = None
    unenforced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {', '.join(NETWORK_MODES)}")
        if (self.uids is None) != (self.setpriv is None):
            raise ValueError("uids and setpriv go together")
        if self.network == "egress" and self.slirp4netns is None:
            raise ValueError("network='egress' needs slirp4netns")

    def host_uid(self, workspace: Path) -> int | None:
        """The host uid (and gid) the sandbox of `workspace` runs as; None when not root."""
        if self.uids is None:
            return None
        return self.uids.of(workspace.parent, workspace.name)

    def release(self, workspace: Path) -> None:
        if self.uids is not None:
            self.uids.release(workspace.parent, workspace.name)

    @property
    def description(self) -> str:
        if self.network == "egress":
            net = "network egress through slirp4netns (no host loopback)"
        else:
            net = "no network (private loopback only)"
        host = self.uids.describe() if self.uids is not None else "the worker's host uid"
        filtered = "a seccomp filter" if self.seccomp is not None else "NO seccomp filter"
        return (
            "bubblewrap: user, pid, net, ipc, uts and cgroup namespaces, no nested user "
            f"namespaces; uid {SANDBOX_UID} ({host}), no capabilities, no new privileges, "
            f"{filtered}; read-only system directories and a minimal /etc, workspace at "
            f"{WORKSPACE}; {net}; limits per process: {self.limits.describe()}; "
            f"{self.share_description}"
        )

    @property
    def share_description(self) -> str:
        if self.hierarchy is not None:
            held = f"share per sandbox ({self.hierarchy.describe()}): {self.share.describe()}"
        else:
            held = "NO memory, process or CPU share per sandbox"
        if self.unenforced:
            held += f" [best-effort, not enforced: {'; '.join(self.unenforced)}]"
        return held

    def argv(
        self,
        workspace: Path,
        workdir: str,
        command: str,
        *,
        host_uid: int | None = None,
        info_fd: int | None = None,
        block_fd: int | None = None,
        seccomp_fd: int | None = None,
        etc: list[str] | None = None,
        join: list[str] | None = None,
    ) -> list[str]:
        """The whole command line. `workdir` is the working directory as the command
        sees it (under /workspace); `host_uid`, the uid to drop to when root.
        `info_fd` receives the host pid of the sandbox's first process (its pid
        namespace's init); with `block_fd` the command waits for a byte on it before
        it starts (egress: until its network is up). `seccomp_fd` holds the filter,
        `etc` builds /etc (`sandbox.etc.view`; default: the host's, whole), and `join`
        prefixes what puts the first process in its cgroup."""
        egress = self.network == "egress"
        outer: list[str] = list(join or [])
        source = str(workspace)
        if self.setpriv is not None:
            # Root: a mount namespace with only what the inner stage binds, then drop.
            assert host_uid is not None and host_uid != 0
            outer += [
                self.bwrap, "--die-with-parent",
                *(["--unshare-net"] if egress else []),
                *_system_binds(),
                "--bind", "/proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--tmpfs", "/tmp",
                "--bind", source, WORKSPACE,
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                "--",
                self.setpriv, f"--reuid={host_uid}", f"--regid={host_uid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                "--no-new-privs", "--",
            ]  # fmt: skip
            source = WORKSPACE
        elif egress:
            # Not root: a user namespace of our own holds the network namespace, so that
            # slirp4netns (running as our uid) may join it.
            outer += [
                self.bwrap, "--unshare-user", "--unshare-net", "--die-with-parent",
                "--dev-bind", "/", "/", "--",
            ]  # fmt: skip
        if egress:
            namespaces = [
                "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try",
            ]  # fmt: skip
        else:
            namespaces = ["--unshare-all", "--unshare-user"]
        env = environment(WORKSPACE, workdir, path=SANDBOX_PATH)
        inner = [
            self.bwrap, *namespaces, "--disable-userns",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--cap-drop", "ALL",
            *_system_binds(with_etc=etc is None),
            *(etc or []),
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(self.limits.shm_bytes), "--tmpfs", "/dev/shm",
            "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp",
            "--bind", source, WORKSPACE,
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--clearenv", *[a for k, v in env.items() for a in ("--setenv", k, v)],
            *(["--info-fd", str(info_fd)] if info_fd is not None else []),
            *(["--block-fd", str(block_fd)] if block_fd is not None else []),
            *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
            "--chdir", workdir, "--",
            *_shell(self.limits, command, processes=True),
        ]  # fmt: skip
        return outer + inner

    def probe(self) -> None:
        """Run `true` the way commands run; raises `SandboxRefused` saying why not."""
        host_uid = self.uids.base if self.uids is not None else None
        with (
            tempfile.TemporaryDirectory(prefix="sessionflow-probe-") as scratch,
            etc.view(SANDBOX_UID, SANDBOX_GID, egress=self.network == "egress") as (view, fds),
            _filter(self.seccomp) as seccomp_fd,
        ):
            workspace = Path(scratch)
            self.hand_over(workspace, host_uid)
            # The probe does not start slirp4netns: without it the namespace has only lo.
            argv = self.argv(
                workspace, WORKSPACE, "true", host_uid=host_uid, seccomp_fd=seccomp_fd, etc=view
            )
            try:
                probe = subprocess.run(
                    argv,
                    env=environment(WORKSPACE, WORKSPACE, path=SANDBOX_PATH),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=_PROBE_TIMEOUT,
                    check=False,
                    start_new_session=True,
                    pass_fds=(*fds, *([seccomp_fd] if seccomp_fd is not None else [])),
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                raise SandboxRefused(f"bubblewrap ({self.bwrap}) could not run: {err}") from None
        if probe.returncode != 0:
            said = probe.stderr.decode(errors="replace").strip().splitlines()
            raise SandboxRefused(
                f"bubblewrap ({self.bwrap}) cannot create the sandbox here "
                f"(exit {probe.returncode}: {said[-1] if said else 'no message'}); "
                "it needs user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0; a container needs them allowed)"
            )

    def hand_over(self, workspace: Path, host_uid: int | None) -> None:
        """When the worker is root, give the workspace's entries to the host uid the
        sandbox runs as (and gid alike): files the worker wrote (file tools) are root's,
        and a command must be able to change them. A descriptor walk that follows no
        symlink, so a command swapping a directory for a link cannot redirect it."""
        if host_uid is None:
            return
        uid = gid = host_uid
        top = os.stat(workspace, follow_symlinks=False)
        if (top.st_uid, top.st_gid) != (uid, gid):
            os.chown(workspace, uid, gid, follow_symlinks=False)
        for _, dirs, files, dir_fd in os.fwalk(workspace, follow_symlinks=False):
            for name in (*dirs, *files):
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if (st.st_uid, st.st_gid) != (uid, gid):
                        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue

    async def _group(self, sandbox_id: str) -> cgroups.Command | None:
        if self.hierarchy is None:
            return None
        try:
            return await asyncio.to_thread(self.hierarchy.prepare, sandbox_id, self.share)
        except OSError as err:
            raise SandboxRefused(f"the sandbox's cgroup could not be made: {err}") from None

    @contextlib.asynccontextmanager
    async def spawn(self, workspace: Path, workdir: Path, command: str) -> AsyncIterator[Running]:
        host_uid = await asyncio.to_thread(self.host_uid, workspace)
        await asyncio.to_thread(self.hand_over, workspace, host_uid)
        inside = Path(WORKSPACE) / workdir.relative_to(workspace)
        egress = self.network == "egress"
        async with contextlib.AsyncExitStack() as stack:
            group = await self._group(workspace.name)
            if group is not None:
                # Unwound last: once everything of the command is dead.
                stack.push_async_callback(asyncio.to_thread, group.remove)
            view, etc_fds = stack.enter_context(etc.view(SANDBOX_UID, SANDBOX_GID, egress=egress))
            seccomp_fd = stack.enter_context(_filter(self.seccomp))
            info_r, info_w = os.pipe()
            block_r, block_w = os.pipe() if egress else (-1, -1)
            argv = self.argv(
                workspace,
                str(inside),
                command,
                host_uid=host_uid,
                info_fd=info_w,
                block_fd=block_r if egress else None,
                seccomp_fd=seccomp_fd,
                etc=view,
                join=group.join_argv() if group is not None else None,
            )
            passed = [info_w, *etc_fds, *([block_r] if egress else [])]
            if seccomp_fd is not None:
                passed.append(seccomp_fd)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=environment(WORKSPACE, str(inside), path=SANDBOX_PATH),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                    pass_fds=passed,
                )
            except BaseException:
                _close(info_r, block_w)
                raise
            finally:
                _close(info_w, block_r)
            running = Running(proc, group=group, share=self.share)
            if group is not None:
                running.oom_before = await asyncio.to_thread(group.oom_kills)
            network: _Network | None = None
            try:
                running.init = await _sandbox_init(info_r)
                if egress:
                    if running.init is None:
                        raise SandboxRefused("the sandbox did not start, so it has no network")
                    network = await self._connect_network(running.init.pid)
                    os.write(block_w, b"1")
                yield running
            finally:
                # Killing the sandbox's init ends its pid namespace: everything the
                # command started. Its host-side helpers are in our process group.
                await running.kill()
                _close(info_r, block_w)
                if network is not None:
                    await network.stop()

    async def _connect_network(self, init_pid: int) -> _Network:
        """slirp4netns attached to the sandbox's network namespace, which the sandbox's
        init shares with its parent (the inner bubblewrap, in the user namespace that
        owns the network namespace when the worker is not root)."""
        assert self.slirp4netns is not None
        holder = _parent_pid(init_pid)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        # As root, slirp4netns confines itself (--enable-sandbox); as our uid it joins the
        # user namespace that owns the network namespace, where that option fails.
        if self.setpriv is not None:
            userns = ["--enable-sandbox"]
        else:
            userns = [f"--userns-path=/proc/{holder}/ns/user"]
        try:
            slirp = await asyncio.create_subprocess_exec(
                self.slirp4netns, "--configure", "--mtu=65520", "--disable-host-loopback",
                "--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", *userns,
                "--netns-type=path", f"/proc/{holder}/ns/net", "tap0",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(ready_w, exit_r),
                start_new_session=True,
            )  # fmt: skip
        except BaseException:
            _close(ready_r, exit_w)
            raise
        finally:
            _close(ready_w, exit_r)
        network = _Network(slirp, exit_w)
        try:
            ready = await asyncio.wait_for(
                asyncio.to_thread(os.read, ready_r, 1), _NETWORK_SETUP_TIMEOUT
            )
        except TimeoutError:
            ready = b""
        finally:
            _close(ready_r)
        if ready != b"1":
            await network.stop()
            said = (await slirp.stderr.read()).decode(errors="replace") if slirp.stderr else ""
            raise SandboxRefused(f"slirp4netns could not give the sandbox a network: {said}")
        return network


@dataclass
class _Network:
    slirp: asyncio.subprocess.Process
    exit_w: int

    async def stop(self) -> None:
        _close(self.exit_w)  # slirp4netns exits when this closes
        _kill_group(self.slirp.pid)
        await self.slirp.wait()


@dataclass(frozen=True)
class _Process:
    """A host process known by pid and start time (so a reused pid is not mistaken)."""

    pid: int
    started: str

    @classmethod
    def find(cls, pid: int) -> _Process | None:
        stat = _stat(pid)
        return None if stat is None else cls(pid, stat[19])

    def alive(self) -> bool:
        """Running, not yet a zombie. The init of a pid namespace becomes a zombie only
        once every other process of its namespace has exited."""
        stat = _stat(self.pid)
        return stat is not None and stat[19] == self.started and stat[0] not in ("Z", "X")

    async def kill_and_wait(self, limit: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)
        step = 0.005
        for _ in range(int(limit / step)):
            if not self.alive():
                return
            await asyncio.sleep(step)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _parent_pid(pid: int) -> int:
    stat = _stat(pid)
    if stat is None:
        raise SandboxRefused("the sandbox ended before its network was set up")
    return int(stat[1])


async def _sandbox_init(info_r: int) -> _Process | None:
    """The sandbox's init, from what bubblewrap writes to `--info-fd` once it has made
    it; None when bubblewrap failed first (its error is the command's stderr)."""
    try:
        info = await asyncio.wait_for(asyncio.to_thread(_read_all, info_r), _PROBE_TIMEOUT)
        return _Process.find(int(json.loads(info)["child-pid"]))
    except (TimeoutError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _filter(program: bytes | None) -> Iterator[int | None]:
    """A descriptor holding the seccomp filter for bubblewrap (None: no filter)."""
    if program is None:
        yield None
        return
    fd = seccomp.memfd(program)
    try:
        yield fd
    finally:
        _close(fd)


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def setup(
    mode: str = "bubblewrap",
    *,
    network: str = "none",
    limits: Limits | None = None,
    share: Share | None = None,
    enforce: str = "kernel",
    uids: HostUids | None = None,
    bwrap: str | None = None,
) -> Isolation:
    """The isolation `mode` asks for, probed: `Refused` (saying what is missing and how
    to install it) when it cannot be set up; never a silent fallback. `bwrap` is the
    binary to use instead of the one on PATH. With `enforce="kernel"` a host that
    cannot hold sandboxes to their `share` (cgroups) or filter system calls is refused
    too; `"best-effort"` runs without what is missing and says so in the description."""
    limits = limits or Limits()
    share = share or Share()
    if mode not in ISOLATION_MODES:
        raise ValueError(
            f"sandbox isolation must be one of {', '.join(ISOLATION_MODES)}, not {mode!r}"
        )
    if network not in NETWORK_MODES:
        raise ValueError(f"sandbox network must be one of {', '.join(NETWORK_MODES)}")
    if enforce not in ENFORCE_MODES:
        raise ValueError(f"sandbox limits must be one of {', '.join(ENFORCE_MODES)}")
    if mode == "none":
        if network != "none":
            raise ValueError("network='egress' needs isolation (bubblewrap)")
        return Unconfined(limits)
    optout = (
        "or set SESSIONFLOW_SANDBOX_ISOLATION=none to run commands unconfined (trusted code only)"
    )
    found = bwrap if bwrap is not None else shutil.which("bwrap")
    if found is None or not os.access(found, os.X_OK):
        where = f"{bwrap} is missing" if bwrap else "bubblewrap (bwrap) is not installed"
        return Refused(f"{where}: {INSTALL_HINT}, {optout}")
    setpriv = None
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return Refused(
                "the worker runs as root and setpriv (util-linux) is missing to drop "
                f"sandboxed commands to an unprivileged uid: install util-linux, {optout}"
            )
    slirp = None
    if network == "egress":
        slirp = shutil.which("slirp4netns")
        if slirp is None:
            return Refused(
                "SESSIONFLOW_SANDBOX_NETWORK=egress needs slirp4netns, which is not "
                "installed: apt-get install slirp4netns (or set SESSIONFLOW_SANDBOX_NETWORK=none)"
            )
    try:
        kernel = _kernel_limits(share, enforce)
    except cgroups.Unavailable as err:
        return Refused(f"{err}; {LIMITS_OPTOUT}")
    try:
        chosen = Bubblewrap(
            found,
            limits,
            network=network,
            uids=(uids or HostUids()) if setpriv is not None else None,
            setpriv=setpriv,
            slirp4netns=slirp,
            share=share,
            **kernel,  # type: ignore[arg-type]
        )
        chosen.probe()
    except (SandboxRefused, ValueError) as err:
        return Refused(f"{err}; {optout}")
    return chosen


LIMITS_OPTOUT = "or set SESSIONFLOW_SANDBOX_LIMITS=best-effort to run without what is missing"


def _kernel_limits(share: Share, enforce: str) -> dict[str, object]:
    """The cgroup hierarchy and seccomp filter this host gives; what it lacks raises
    `cgroups.Unavailable` when `enforce` is "kernel", else is left out and named."""
    missing: list[str] = []
    arch = seccomp.host_arch()
    program = seccomp.program(arch) if arch is not None else None
    if program is None:
        missing.append(f"no seccomp filter for this architecture ({os.uname().machine})")
    hierarchy: Hierarchy | None = None
    try:
        hierarchy = cgroups.detect()
        hierarchy.check(share)
    except cgroups.Unavailable as err:
        hierarchy = None
        missing.append(f"no cgroup share: {err}")
    if missing and enforce == "kernel":
        raise cgroups.Unavailable("; ".join(missing))
    return {"hierarchy": hierarchy, "seccomp": program, "unenforced": tuple(missing)}
