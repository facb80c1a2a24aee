"""The `module:attr` import paths some settings hold (`SESSIONFLOW_SANDBOX`,
`SESSIONFLOW_PROVIDERS`), resolved to what they name: an instance used as it is, or a
class or factory called with no arguments, or else with the settings. Errors are one
line, for the command line to print.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable


def import_object(path: str) -> object:
    """The object a `module:attr` import path names (`attr` may be dotted: `mod:Cls.make`).

    Raises `ImportError` (the module, or something it imports, is missing) or
    `ValueError` (no `:attr`, no such attribute), each with a one-line reason.
    """
    module_name, _, attr = (part.strip() for part in path.partition(":"))
    if not module_name or module_name.startswith("."):
        raise ValueError("no module before ':'" if not module_name else "a relative module")
    module = importlib.import_module(module_name)
    if not attr:
        raise ValueError(f"no ':attr' after the module {module_name!r}")
    found: object = module
    for name in attr.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return found


def import_factory(
    path: str, settings: object, kind: str, is_instance: Callable[[object], bool]
) -> Callable[[], object]:
    """What a `module:attr` setting names, as a call that makes the `kind` of object wanted.

    The attribute may be an instance (`is_instance(attr)`), used as is, or a class or
    other callable, called with no arguments if it needs none, else with `settings` as
    its one positional argument. Raises `ImportError` or `ValueError` with a one-line
    reason when the path names neither; what the call raises is the factory's own.
    """
    found = import_object(path)
    if is_instance(found):
        return lambda: found
    if not callable(found):
        raise ValueError(f"it names a {type(found).__name__}, not a {kind}, class or factory")
    factory = found
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none: try the simplest call
        return factory
    for args in ((), (settings,)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return functools.partial(factory, *args)
    raise ValueError(f"it must take no arguments or just the Settings, not {signature}")
