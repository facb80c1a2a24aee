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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sessionflow.errors import SandboxRefused

ISOLATION_MODES = ("bubblewrap", "none")
NETWORK_MODES = ("none", "egress")
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


@dataclass
class Running:
    """A started command: its host process (stdout and stderr piped) and how to end it
    with everything it started (also done when `spawn`'s context ends)."""

    proc: asyncio.subprocess.Process
    init: _Process | None = None

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


def _system_binds(flag: str = "--ro-bind") -> list[str]:
    """The system directories as on the host: a symlink (`/bin -> usr/bin`) stays one."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += [flag, path, path]
    return args


@dataclass(frozen=True)
class Bubblewrap:
    """Commands in bubblewrap (see the module's docstring).

    `host_uid`/`host_gid`: when the worker runs as root, the unprivileged host uid and
    gid commands run as (`setpriv` drops to them); None when the worker is not root
    and commands run as its uid. `slirp4netns` is needed for `network="egress"`.
    """

    bwrap: str
    limits: Limits
    network: str = "none"
    host_uid: int | None = None
    host_gid: int | None = None
    setpriv: str | None = None
    slirp4netns: str | None = None

    def __post_init__(self) -> None:
        if self.network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {', '.join(NETWORK_MODES)}")
        if (self.host_uid is None) != (self.setpriv is None):
            raise ValueError("host_uid and setpriv go together")
        if self.host_uid == 0 or self.host_gid == 0:
            raise ValueError("sandboxed commands must not run as host uid or gid 0")
        if self.network == "egress" and self.slirp4netns is None:
            raise ValueError("network='egress' needs slirp4netns")

    @property
    def description(self) -> str:
        if self.network == "egress":
            net = "network egress through slirp4netns (no host loopback)"
        else:
            net = "no network (private loopback only)"
        host = f"host uid {self.host_uid}" if self.host_uid is not None else "the worker's host uid"
        return (
            "bubblewrap: user, pid, net, ipc, uts and cgroup namespaces, no nested user "
            f"namespaces; uid {SANDBOX_UID} ({host}), no capabilities, no new privileges; "
            f"read-only system directories, workspace at {WORKSPACE}; {net}; "
            f"limits: {self.limits.describe()}"
        )

    def argv(
        self,
        workspace: Path,
        workdir: str,
        command: str,
        *,
        info_fd: int | None = None,
        block_fd: int | None = None,
    ) -> list[str]:
        """The whole command line. `workdir` is the working directory as the command
        sees it (under /workspace). `info_fd` receives the host pid of the sandbox's
        first process (its pid namespace's init); with `block_fd` the command waits
        for a byte on it before it starts (egress: until its network is up)."""
        egress = self.network == "egress"
        outer: list[str] = []
        source = str(workspace)
        if self.host_uid is not None:
            # Root: a mount namespace with only what the inner stage binds, then drop.
            assert self.setpriv is not None and self.host_gid is not None
            outer = [
                self.bwrap, "--die-with-parent",
                *(["--unshare-net"] if egress else []),
                *_system_binds(),
                "--bind", "/proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--tmpfs", "/tmp",
                "--bind", source, WORKSPACE,
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                "--",
                self.setpriv, f"--reuid={self.host_uid}", f"--regid={self.host_gid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                "--no-new-privs", "--",
            ]  # fmt: skip
            source = WORKSPACE
        elif egress:
            # Not root: a user namespace of our own holds the network namespace, so that
            # slirp4netns (running as our uid) may join it.
            outer = [
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
            *_system_binds(),
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(self.limits.shm_bytes), "--tmpfs", "/dev/shm",
            "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp",
            "--bind", source, WORKSPACE,
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--clearenv", *[a for k, v in env.items() for a in ("--setenv", k, v)],
            *(["--info-fd", str(info_fd)] if info_fd is not None else []),
            *(["--block-fd", str(block_fd)] if block_fd is not None else []),
            "--chdir", workdir, "--",
            *_shell(self.limits, command, processes=True),
        ]  # fmt: skip
        return outer + inner

    def probe(self) -> None:
        """Run `true` the way commands run; raises `SandboxRefused` saying why not."""
        with tempfile.TemporaryDirectory(prefix="sessionflow-probe-") as scratch:
            workspace = Path(scratch)
            self.hand_over(workspace)
            # The probe does not start slirp4netns: without it the namespace has only lo.
            argv = self.argv(workspace, WORKSPACE, "true")
            try:
                probe = subprocess.run(
                    argv,
                    env=environment(WORKSPACE, WORKSPACE, path=SANDBOX_PATH),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=_PROBE_TIMEOUT,
                    check=False,
                    start_new_session=True,
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

    def hand_over(self, workspace: Path) -> None:
        """When the worker is root, give the workspace's entries to the host uid the
        commands run as: files the worker wrote (file tools) are root's, and a command
        must be able to change them. A descriptor walk that follows no symlink, so a
        command swapping a directory for a link cannot redirect it."""
        if self.host_uid is None or self.host_gid is None:
            return
        uid, gid = self.host_uid, self.host_gid
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

    @contextlib.asynccontextmanager
    async def spawn(self, workspace: Path, workdir: Path, command: str) -> AsyncIterator[Running]:
        await asyncio.to_thread(self.hand_over, workspace)
        inside = Path(WORKSPACE) / workdir.relative_to(workspace)
        egress = self.network == "egress"
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe() if egress else (-1, -1)
        argv = self.argv(
            workspace,
            str(inside),
            command,
            info_fd=info_w,
            block_fd=block_r if egress else None,
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=environment(WORKSPACE, str(inside), path=SANDBOX_PATH),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(info_w, block_r) if egress else (info_w,),
            )
        except BaseException:
            _close(info_r, block_w)
            raise
        finally:
            _close(info_w, block_r)
        running = Running(proc)
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
            # Killing the sandbox's init ends its pid namespace: everything the command
            # started. Its host-side helpers are in our process group.
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
        if self.host_uid is not None:
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
    host_uid: int = SANDBOX_UID,
    host_gid: int = SANDBOX_GID,
    bwrap: str | None = None,
) -> Isolation:
    """The isolation `mode` asks for, probed: `Refused` (saying what is missing and how
    to install it) when it cannot be set up; never a silent fallback. `bwrap` is the
    binary to use instead of the one on PATH."""
    limits = limits or Limits()
    if mode not in ISOLATION_MODES:
        raise ValueError(
            f"sandbox isolation must be one of {', '.join(ISOLATION_MODES)}, not {mode!r}"
        )
    if network not in NETWORK_MODES:
        raise ValueError(f"sandbox network must be one of {', '.join(NETWORK_MODES)}")
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
    uid: int | None = None
    gid: int | None = None
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return Refused(
                "the worker runs as root and setpriv (util-linux) is missing to drop "
                f"sandboxed commands to an unprivileged uid: install util-linux, {optout}"
            )
        uid, gid = host_uid, host_gid
    slirp = None
    if network == "egress":
        slirp = shutil.which("slirp4netns")
        if slirp is None:
            return Refused(
                "SESSIONFLOW_SANDBOX_NETWORK=egress needs slirp4netns, which is not "
                "installed: apt-get install slirp4netns (or set SESSIONFLOW_SANDBOX_NETWORK=none)"
            )
    try:
        chosen = Bubblewrap(
            found,
            limits,
            network=network,
            host_uid=uid,
            host_gid=gid,
            setpriv=setpriv,
            slirp4netns=slirp,
        )
        chosen.probe()
    except (SandboxRefused, ValueError) as err:
        return Refused(f"{err}; {optout}")
    return chosen
