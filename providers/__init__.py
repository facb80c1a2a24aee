"""Model providers: the scripted offline model, and vendors' APIs."""

from providers.base import ModelEvent, ModelProvider, ModelRequest, ToolSpec
from providers.registry import ModelRegistry
from providers.scripted import Script, ScriptedProvider, ScriptedToolCall, ScriptStep

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
