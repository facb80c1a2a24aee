"""The seccomp filter every sandboxed command runs under: the kernel's riskiest calls fail.

Namespaces and a dropped capability set already stop most of what a container
runtime's default profile forbids (mounts, module loading, clock changes), but some
system calls stay open to an unprivileged process and have been the way out of
containers more than once: io_uring (a second system-call path that seccomp cannot
see into), the kernel keyrings (shared by every process of a uid), `ptrace` and
`process_vm_*` (a command's own processes only, but a common exploit primitive),
`perf_event_open`, `bpf`, `userfaultfd` (the tool that makes kernel races winnable).
Each fails with EPERM, as under Docker's default profile; everything else is allowed.

The filter is classic BPF, built here as bubblewrap's `--seccomp FD` takes it (an
array of `struct sock_filter`), so no libseccomp is needed. It checks the
architecture first: a call through another ABI (i386 `int 0x80`, x32 on x86-64) has
other numbers and would slip past the list, so every such call fails too.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
from dataclasses import dataclass

# linux/audit.h
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
# x32 system calls are x86-64 numbers with this bit set.
X32_SYSCALL_BIT = 0x40000000
# linux/seccomp.h
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# linux/filter.h: opcodes, and where `struct seccomp_data` keeps the call and the ABI.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
_NR_OFFSET = 0
_ARCH_OFFSET = 4

# What fails, by the reason it fails.
BLOCKED = (
    # A second system-call path, and the keyrings.
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "add_key", "request_key", "keyctl",
    # Reading or steering another process, and kernel-exploit helpers.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "perf_event_open", "bpf", "userfaultfd", "lookup_dcookie",
    "name_to_handle_at", "open_by_handle_at",
    # New namespaces and mounts (already refused by namespaces and capabilities).
    "unshare", "setns", "mount", "umount2", "pivot_root", "mount_setattr",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    # The machine's own state: kernels, modules, swap, clocks, logs, quotas.
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "syslog", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "quotactl", "quotactl_fd", "fanotify_init",
    # x86-64 only.
    "iopl", "ioperm", "uselib", "_sysctl",
)  # fmt: skip

# System call numbers: arch/x86/entry/syscalls/syscall_64.tbl and
# include/uapi/asm-generic/unistd.h (arm64).
_X86_64 = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "vhangup": 153, "pivot_root": 155,
    "_sysctl": 156, "adjtimex": 159, "acct": 163, "settimeofday": 164, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172,
    "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323,
}  # fmt: skip
_AARCH64 = {
    "lookup_dcookie": 18, "umount2": 39, "mount": 40, "pivot_root": 41, "vhangup": 58,
    "quotactl": 60, "acct": 89, "unshare": 97, "kexec_load": 104, "init_module": 105,
    "delete_module": 106, "clock_settime": 112, "syslog": 116, "ptrace": 117,
    "reboot": 142, "settimeofday": 170, "adjtimex": 171, "add_key": 217,
    "request_key": 218, "keyctl": 219, "swapon": 224, "swapoff": 225,
    "perf_event_open": 241, "fanotify_init": 262, "name_to_handle_at": 264,
    "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268,
    "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "finit_module": 273,
    "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294,
}  # fmt: skip
# Numbered alike on every architecture since 5.1.
_COMMON = {
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "pidfd_getfd": 438, "mount_setattr": 442, "quotactl_fd": 443,
}  # fmt: skip


@dataclass(frozen=True)
class Arch:
    """An architecture the filter knows: its audit id and its system call numbers."""

    name: str
    audit: int
    numbers: dict[str, int]


ARCHES = {
    "x86_64": Arch("x86_64", AUDIT_ARCH_X86_64, {**_X86_64, **_COMMON}),
    "aarch64": Arch("aarch64", AUDIT_ARCH_AARCH64, {**_AARCH64, **_COMMON}),
}


def host_arch() -> Arch | None:
    """This machine's architecture, if the filter knows it."""
    machine = platform.machine().lower()
    return ARCHES.get({"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine))


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(arch: Arch, *, blocked: tuple[str, ...] = BLOCKED) -> bytes:
    """The filter as bubblewrap reads it: `struct sock_filter`s, native byte order.
    Calls of `blocked` that `arch` lacks (x86-only ones on arm64) are left out."""
    numbers = sorted({arch.numbers[name] for name in blocked if name in arch.numbers})
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    body: list[tuple[int, int]] = []  # (opcode, k) of the jumps to `deny`
    if arch.audit == AUDIT_ARCH_X86_64:
        body.append((_JGE_K, X32_SYSCALL_BIT))
    body += [(_JEQ_K, nr) for nr in numbers]
    # Layout: 0 load arch, 1 check it, 2 load nr, body, allow, deny.
    deny_at = 3 + len(body) + 1
    if deny_at - 2 > 255:
        raise ValueError("too many blocked system calls for one BPF jump")
    insns = [
        _insn(_LD_W_ABS, _ARCH_OFFSET),
        _insn(_JEQ_K, arch.audit, 0, deny_at - 2),
        _insn(_LD_W_ABS, _NR_OFFSET),
    ]
    for i, (code, k) in enumerate(body):
        insns.append(_insn(code, k, deny_at - (3 + i + 1), 0))
    insns += [_insn(_RET_K, SECCOMP_RET_ALLOW), _insn(_RET_K, deny)]
    return b"".join(insns)


def memfd(filter_program: bytes) -> int:
    """A descriptor holding `filter_program`, at offset 0, for `bwrap --seccomp FD`;
    the caller closes it once the sandbox has started."""
    fd = os.memfd_create("sessionflow-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, filter_program)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
