"""`agent(...)`: a model, a system prompt and tools, under a name workers serve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.tools import Tool
from providers.scripted import Script
from workflows.ids import validate_agent_name


@dataclass(frozen=True)
class Agent:
    name: str
    model: str | Script
    system: str | None
    tools: tuple[Tool[Any], ...]

    @property
    def model_id(self) -> str:
        """The `provider/model` string of the agent's model."""
        return self.model.model_id if isinstance(self.model, Script) else self.model

    def tool(self, name: str) -> Tool[Any] | None:
        return next((t for t in self.tools if t.name == name), None)


def agent(
    name: str,
    *,
    model: str | Script,
    system: str | None = None,
    tools: Sequence[Tool[Any]] = (),
) -> Agent:
    """Define an agent.

    Args:
        name: how sessions refer to it; part of every session's workflow id.
        model: `"provider/model"`, e.g. `"anthropic/claude-sonnet-4-6"` or
            `"scripted/<name>"`, or a `Script` for the offline scripted model.
        system: the system prompt.
        tools: the tools the model may call.
    """
    validate_agent_name(name)
    if isinstance(model, str) and "/" not in model:
        raise ValueError(f"agent {name!r}: model must look like 'provider/model', got {model!r}")
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"agent {name!r}: duplicate tool names {duplicates}")
    return Agent(name=name, model=model, system=system, tools=tuple(tools))
