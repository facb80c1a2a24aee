"""Defining agents and tools: `agent(...)`, `tool(...)` and the registry workers serve."""

from sessionflow.agents.definition import Agent, agent
from sessionflow.agents.registry import AgentRegistry, load_agents
from sessionflow.agents.tools import Tool, ToolContext, tool

__all__ = ["Agent", "AgentRegistry", "Tool", "ToolContext", "agent", "load_agents", "tool"]
