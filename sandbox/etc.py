"""The `/etc` a sandboxed command sees: what programs need, nothing of the host's own.

The host's `/etc` says much about the host (its users and groups, its hosts file and
networks, its services' configuration, sometimes credentials readable by all) and a
command needs little of it. A sandbox's `/etc` is built instead from

- files written for it (`GENERATED`): `passwd` and `group` naming only root and the
  sandbox's user, a `hosts` of loopback names, `hostname`, `nsswitch.conf` (files,
  then DNS), and `resolv.conf` pointing at slirp4netns' resolver when it has egress;
- the host's files that programs read to work at all (`FROM_HOST`): the dynamic
  linker's cache and configuration, `alternatives` (Debian's `/usr/bin` tools link
  through it), TLS root certificates, time zone, OS release, protocol and service
  names. Nothing else: no
  `environment` or `gitconfig` (they may hold proxy credentials or tokens), no
  `shadow`, no services' configuration. Each is bound read-only if it
  exists; a symlink stays one.

Generated files are copied into the sandbox's root (`bwrap --file`), so no mount
names a host path for them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

# What a sandbox's /etc holds besides the generated files, each if the host has it.
FROM_HOST = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
    "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf",
    "pki/tls/certs", "pki/ca-trust", "crypto-policies",
    "localtime", "timezone", "os-release", "debian_version", "lsb-release",
    "protocols", "services", "mime.types", "terminfo", "locale.alias",
)  # fmt: skip
# slirp4netns' built-in DNS forwarder.
SLIRP_DNS = "10.0.2.3"


def generated(uid: int, gid: int, *, egress: bool) -> dict[str, str]:
    """The files written for the sandbox, by name under /etc."""
    files = {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"nobody:x:{uid}:{gid}:sandbox:/workspace:/bin/bash\n"
        ),
        "group": f"root:x:0:\nnogroup:x:{gid}:\n",
        "hosts": (
            "127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        "hostname": "sandbox\n",
        "nsswitch.conf": (
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
            "networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n"
        ),
    }
    if egress:
        files["resolv.conf"] = f"nameserver {SLIRP_DNS}\n"
    return files


def host_binds(etc: Path = Path("/etc")) -> list[str]:
    """bwrap arguments binding `FROM_HOST`, read-only, from the host's /etc."""
    args: list[str] = []
    for pattern in FROM_HOST:
        for path in sorted(etc.glob(pattern)):
            args += _bind(path, f"/etc/{path.relative_to(etc)}")
    return args


def _bind(path: Path, target: str) -> list[str]:
    if path.is_symlink():
        return ["--symlink", os.readlink(path), target]
    if path.exists():
        return ["--ro-bind", str(path), target]
    return []


@contextlib.contextmanager
def view(uid: int, gid: int, *, egress: bool) -> Iterator[tuple[list[str], list[int]]]:
    """bwrap arguments that build the sandbox's /etc, and the descriptors they read
    (to pass to bwrap), closed when the block ends."""
    fds: list[int] = []
    try:
        args = ["--dir", "/etc"]
        for name, text in generated(uid, gid, egress=egress).items():
            fd = _memfd(name, text.encode())
            fds.append(fd)
            args += ["--perms", "0644", "--file", str(fd), f"/etc/{name}"]
        args += host_binds()
        args += ["--symlink", "../proc/self/mounts", "/etc/mtab"]
        yield args, fds
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(f"sessionflow-etc-{name}", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
