"""The agents one worker serves, by name."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from sessionflow.agents.definition import Agent
from sessionflow.errors import AgentNotRegistered


class AgentRegistry:
    def __init__(self, agents: Iterable[Agent]) -> None:
        self._agents: dict[str, Agent] = {}
        for a in agents:
            if a.name in self._agents:
                raise ValueError(f"agent {a.name!r} is registered twice")
            self._agents[a.name] = a

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            served = ", ".join(sorted(self._agents)) or "none"
            raise AgentNotRegistered(
                f"agent {name!r} is not registered on this worker (it serves: {served})"
            ) from None

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._agents.values())

    def names(self) -> list[str]:
        return sorted(self._agents)


def load_agents(spec: str) -> list[Agent]:
    """Load agents from `package.module:attribute`.

    The attribute may be an `Agent`, a list or tuple of agents, or a zero-argument
    callable returning either.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"agents spec must look like 'package.module:attribute', got {spec!r}")
    module = importlib.import_module(module_name)
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(value) and not isinstance(value, Agent):
        value = value()
    found = [value] if isinstance(value, Agent) else list(value)
    if not found or not all(isinstance(a, Agent) for a in found):
        raise ValueError(f"{spec!r} must be an Agent or a list of Agents")
    return found
