"""Sandbox backends by name, and the one a worker's settings choose.

`SESSIONFLOW_SANDBOX` is either a registered name (built in: `local`, `e2b`) or an
import path `module:attr`, so a new backend needs no change to Sessionflow:

    SESSIONFLOW_SANDBOX=mypkg.sandboxes:Firecracker sessionflow worker --agents mypkg:agents

The attribute an import path names may be

- a `SandboxBackend` instance (an object with `name`, `create` and `connect`): used
  as is;
- a class or any other callable returning one: called with no arguments if it needs
  none, else with the worker's `Settings` as its one positional argument.

Code the worker imports anyway (its agents module, say) can instead call
`register_sandbox_backend("firecracker", factory)` and set `SESSIONFLOW_SANDBOX=firecracker`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sessionflow.config import Settings, import_factory
from sessionflow.errors import InvalidInput
from sessionflow.sandbox.base import SandboxBackend
from sessionflow.sandbox.cgroups import Share
from sessionflow.sandbox.isolation import Limits
from sessionflow.sandbox.local import LocalSandboxBackend
from sessionflow.sandbox.uids import HostUids

SandboxFactory = Callable[[Settings], SandboxBackend]
VARIABLE = "SESSIONFLOW_SANDBOX"


def _local(settings: Settings) -> SandboxBackend:
    mib = 1024 * 1024
    limits = Limits(
        processes=settings.sandbox_max_processes,
        memory_bytes=settings.sandbox_max_memory_mb * mib,
        cpu_seconds=settings.sandbox_max_cpu_seconds,
        file_bytes=settings.sandbox_max_file_mb * mib,
        open_files=settings.sandbox_max_open_files,
        tmp_bytes=settings.sandbox_tmp_mb * mib,
    )
    return LocalSandboxBackend(
        settings.sandboxes,
        isolation=settings.sandbox_isolation,
        network=settings.sandbox_network,
        limits=limits,
        share=Share(
            memory_bytes=settings.sandbox_memory_mb * mib,
            processes=settings.sandbox_max_processes,
            cpu_percent=settings.sandbox_cpu_percent,
            disk_bytes=settings.sandbox_disk_mb * mib,
        ),
        enforce=settings.sandbox_limits,
        uids=HostUids(settings.sandbox_uid, settings.sandbox_uids),
    )


def _e2b(settings: Settings) -> SandboxBackend:
    # Imported here, so the e2b SDK loads only on workers that use it.
    from sessionflow.sandbox.e2b import E2BSandboxBackend

    return E2BSandboxBackend(
        template=settings.e2b_template,
        timeout_seconds=settings.e2b_timeout_seconds,
        api_key=settings.e2b_api_key,
    )


_BACKENDS: dict[str, SandboxFactory] = {"local": _local, "e2b": _e2b}


def register_sandbox_backend(name: str, factory: SandboxFactory) -> None:
    """Let `SESSIONFLOW_SANDBOX=<name>` build its backend with `factory(settings)`;
    registering a name again replaces its factory."""
    if not name or ":" in name or name != name.strip():
        raise InvalidInput(f"a sandbox backend name must be a plain word, not {name!r}")
    _BACKENDS[name] = factory


def sandbox_backends() -> list[str]:
    """The registered backend names, built-ins first."""
    return list(_BACKENDS)


def is_sandbox_backend(value: object) -> bool:
    """Whether `value` looks like a `SandboxBackend` instance (not a class)."""
    return (
        not isinstance(value, type)
        and isinstance(getattr(value, "name", None), str)
        and callable(getattr(value, "create", None))
        and callable(getattr(value, "connect", None))
    )


def backend_from_settings(settings: Settings) -> SandboxBackend:
    """The backend `settings.sandbox_backend` (`SESSIONFLOW_SANDBOX`) names.

    Raises `InvalidInput`, in one line, when it is neither a registered name nor an
    import path of a backend.
    """
    value = settings.sandbox_backend
    factory = _BACKENDS.get(value)
    if factory is not None:
        return factory(settings)
    try:
        make = import_factory(value, settings, "SandboxBackend", is_sandbox_backend)
    except (ImportError, ValueError) as err:
        raise InvalidInput(
            f"{VARIABLE}={value!r}: not a registered backend ({', '.join(sandbox_backends())})"
            f" nor an importable 'module:attr' ({err})"
        ) from None
    backend = make()
    if not is_sandbox_backend(backend):
        raise InvalidInput(
            f"{VARIABLE}={value!r} gave {backend!r}, not a SandboxBackend "
            "(an object with name, create and connect)"
        )
    return cast(SandboxBackend, backend)
