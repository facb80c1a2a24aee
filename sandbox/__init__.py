"""Sandboxes: where a session's commands and file tools run, behind one interface."""

from sessionflow.sandbox.base import ExecResult, Sandbox, SandboxBackend, SandboxStatus
from sessionflow.sandbox.local import LocalSandbox, LocalSandboxBackend

__all__ = [
    "ExecResult",
    "LocalSandbox",
    "LocalSandboxBackend",
    "Sandbox",
    "SandboxBackend",
    "SandboxStatus",
]
