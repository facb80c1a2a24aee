"""Sessionflow: durable LLM agent sessions on Temporal, streamed through Redis.

The public API, gathered from the packages that implement it:

    from sessionflow import agent, tool, SessionClient, Script, ScriptStep

Names are imported on first use, so `import sessionflow` stays cheap and the
implementation packages can import `sessionflow.errors` without a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Agent": "agents",
    "Tool": "agents",
    "ToolContext": "agents",
    "agent": "agents",
    "tool": "agents",
    "SessionClient": "client",
    "Session": "client",
    "SendResult": "client",
    "Script": "providers",
    "ScriptStep": "providers",
    "ScriptedToolCall": "providers",
    "Message": "workflows.messages",
    "Usage": "workflows.messages",
    "TurnOutcome": "workflows.contract",
    "TurnStatus": "workflows.contract",
    "StreamEvent": "streams.reader",
    "StreamReader": "streams.reader",
    "SessionflowError": "sessionflow.errors",
    "InvalidInput": "sessionflow.errors",
    "SessionNotFound": "sessionflow.errors",
    "AgentNotRegistered": "sessionflow.errors",
    "ModelNotFound": "sessionflow.errors",
    "SandboxError": "sessionflow.errors",
    "SandboxNotFound": "sessionflow.errors",
    "ConnectionFailed": "sessionflow.errors",
    "StreamUnavailable": "sessionflow.errors",
    "TemporalUnavailable": "sessionflow.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sessionflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from agents import Agent, Tool, ToolContext, agent, tool
    from client import SendResult, Session, SessionClient
    from providers import Script, ScriptedToolCall, ScriptStep
    from sessionflow.errors import (
        AgentNotRegistered,
        ConnectionFailed,
        InvalidInput,
        ModelNotFound,
        SandboxError,
        SandboxNotFound,
        SessionflowError,
        SessionNotFound,
        StreamUnavailable,
        TemporalUnavailable,
    )
    from streams.reader import StreamEvent, StreamReader
    from workflows.contract import TurnOutcome, TurnStatus
    from workflows.messages import Message, Usage
