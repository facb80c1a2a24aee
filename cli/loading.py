"""Loading the agents `--agents module:attr` names, from the current directory first.

As uvicorn does for its `module:app`, the current directory goes first on `sys.path`,
so `sessionflow worker --agents mypackage.agents:assistant` finds `mypackage/` where
the command runs, without PYTHONPATH. Every way this can go wrong is one line that
says what to fix: no such module, an import error inside it, no such attribute, or
something that is not an agent.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from sessionflow.agents.definition import Agent
from sessionflow.config import ConfigError

SHAPE = "MODULE:ATTR (e.g. mypackage.agents:assistant)"


class AgentSpecError(ConfigError):
    """An `--agents` value that names no agent; the message is one line."""


def _from_cwd() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _where(err: BaseException) -> str:
    """`file:line` of the innermost frame of the user's code in `err`'s traceback."""
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if "importlib" not in f.filename and not f.filename.startswith("<frozen")
    ]
    if not frames:
        return ""
    frame = frames[-1]
    try:
        name = str(Path(frame.filename).relative_to(Path.cwd()))
    except ValueError:
        name = frame.filename
    return f" at {name}:{frame.lineno}"


def load_agent_spec(spec: str) -> list[Agent]:
    """The agents `spec` names: an `Agent`, a list or tuple of them, or a function of
    no arguments that returns either. Raises `AgentSpecError`."""
    module_name, sep, attr = (part.strip() for part in spec.partition(":"))
    if not sep or not module_name or not attr:
        raise AgentSpecError(f"--agents {spec}: expected {SHAPE}")
    _from_cwd()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AgentSpecError(
                f"--agents {spec}: no module {module_name!r} in the current directory "
                f"({os.getcwd()}) or on the Python path"
            ) from None
        raise AgentSpecError(
            f"--agents {spec}: importing {module_name!r} failed{_where(err)}: {err}"
        ) from None
    except Exception as err:  # the user's module raised while it was imported
        raise AgentSpecError(
            f"--agents {spec}: importing {module_name!r} failed{_where(err)}: "
            f"{type(err).__name__}: {err}"
        ) from None
    value: object = module
    for name in attr.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise AgentSpecError(
                f"--agents {spec}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if callable(value) and not isinstance(value, Agent):
        try:
            value = value()
        except Exception as err:
            raise AgentSpecError(
                f"--agents {spec}: calling {attr}() failed{_where(err)}: "
                f"{type(err).__name__}: {err}"
            ) from None
    found = [value] if isinstance(value, Agent) else value
    if not isinstance(found, list | tuple) or not found:
        raise AgentSpecError(
            f"--agents {spec}: {attr} is a {type(value).__name__}, not an Agent, a list of "
            "agents or a function returning either (make one with sessionflow.agent(...))"
        )
    strays = [type(a).__name__ for a in found if not isinstance(a, Agent)]
    if strays:
        raise AgentSpecError(
            f"--agents {spec}: {attr} holds a {strays[0]}, not an Agent "
            "(make one with sessionflow.agent(...))"
        )
    return list(found)


def load_agents(specs: Sequence[str], default: str) -> list[Agent]:
    """The agents of every spec (`default` when none is given), each name once."""
    agents: dict[str, Agent] = {}
    for spec in specs or [default]:
        for found in load_agent_spec(spec):
            if agents.get(found.name, found) is not found:
                raise AgentSpecError(f"--agents: two different agents are named {found.name!r}")
            agents[found.name] = found
    return list(agents.values())
