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
    "Agent": "sessionflow.agents",
    "Tool": "sessionflow.agents",
    "ToolContext": "sessionflow.agents",
    "agent": "sessionflow.agents",
    "tool": "sessionflow.agents",
    "MCPServerStdio": "sessionflow.agents",
    "MCPServerHTTP": "sessionflow.agents",
    "SessionClient": "sessionflow.client",
    "Session": "sessionflow.client",
    "SendResult": "sessionflow.client",
    "use_client": "sessionflow.client",
    "Script": "sessionflow.providers",
    "ScriptStep": "sessionflow.providers",
    "ScriptedToolCall": "sessionflow.providers",
    "Message": "sessionflow.messages",
    "Usage": "sessionflow.messages",
    "Budget": "sessionflow.budgets",
    "Price": "sessionflow.prices",
    "ActivitySettings": "sessionflow.contract",
    "Compaction": "sessionflow.compaction",
    "TurnOutcome": "sessionflow.contract",
    "TurnStatus": "sessionflow.contract",
    "StreamEvent": "sessionflow.streams.reader",
    "StreamReader": "sessionflow.streams.reader",
    "SessionflowError": "sessionflow.errors",
    "InvalidInput": "sessionflow.errors",
    "SessionNotFound": "sessionflow.errors",
    "SessionEnded": "sessionflow.errors",
    "SessionClosed": "sessionflow.errors",
    "SessionFailed": "sessionflow.errors",
    "AgentNotRegistered": "sessionflow.errors",
    "ModelNotFound": "sessionflow.errors",
    "SandboxError": "sessionflow.errors",
    "SandboxNotFound": "sessionflow.errors",
    "ConnectionFailed": "sessionflow.errors",
    "StreamUnavailable": "sessionflow.errors",
    "TemporalUnavailable": "sessionflow.errors",
    "WebhookSignatureInvalid": "sessionflow.errors",
    "verify_webhook": "sessionflow.webhooks",
}

__all__ = sorted(_EXPORTS)


# Names whose users call `agent.session(id)`, which the client layer provides.
_WITH_CLIENT = ("Agent", "agent")
# Public names that are another name in their module.
_ALIASES: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sessionflow' has no attribute {name!r}")
    if name in _WITH_CLIENT:
        importlib.import_module("sessionflow.client")
    return getattr(importlib.import_module(module), _ALIASES.get(name, name))


if TYPE_CHECKING:
    from sessionflow.agents import (
        Agent,
        MCPServerHTTP,
        MCPServerStdio,
        Tool,
        ToolContext,
        agent,
        tool,
    )
    from sessionflow.budgets import Budget
    from sessionflow.client import (
        SendResult,
        Session,
        SessionClient,
        use_client,
    )
    from sessionflow.compaction import Compaction
    from sessionflow.contract import ActivitySettings, TurnOutcome, TurnStatus
    from sessionflow.errors import (
        AgentNotRegistered,
        ConnectionFailed,
        InvalidInput,
        ModelNotFound,
        SandboxError,
        SandboxNotFound,
        SessionClosed,
        SessionEnded,
        SessionFailed,
        SessionflowError,
        SessionNotFound,
        StreamUnavailable,
        TemporalUnavailable,
        WebhookSignatureInvalid,
    )
    from sessionflow.messages import Message, Usage
    from sessionflow.prices import Price
    from sessionflow.providers import Script, ScriptedToolCall, ScriptStep
    from sessionflow.streams.reader import StreamEvent, StreamReader
    from sessionflow.webhooks import verify_webhook
