"""Defining agents and tools: `agent(...)`, `tool(...)` and the registry workers serve."""

from sessionflow.agents.definition import Agent, agent
from sessionflow.agents.mcp import MCPServer, MCPServerHTTP, MCPServerStdio
from sessionflow.agents.mcp_connections import close_mcp_connections
from sessionflow.agents.registry import AgentRegistry, load_agents
from sessionflow.agents.tools import Tool, ToolContext, tool

__all__ = [
    "Agent",
    "AgentRegistry",
    "MCPServer",
    "MCPServerHTTP",
    "MCPServerStdio",
    "Tool",
    "ToolContext",
    "agent",
    "close_mcp_connections",
    "load_agents",
    "tool",
]
