"""Model providers: the scripted offline model, and vendors' APIs."""

from sessionflow.providers.base import ModelEvent, ModelProvider, ModelRequest, ToolSpec
from sessionflow.providers.registry import ModelRegistry
from sessionflow.providers.scripted import Script, ScriptedProvider, ScriptedToolCall, ScriptStep

__all__ = [
    "ModelEvent",
    "ModelProvider",
    "ModelRegistry",
    "ModelRequest",
    "Script",
    "ScriptStep",
    "ScriptedProvider",
    "ScriptedToolCall",
    "ToolSpec",
]
