"""A model provider that plays scripts like the scripted one and records every request,
so a test can assert which tools, with which schemas, the model was offered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from sessionflow.providers.base import ModelEvent, ModelRequest
from sessionflow.providers.scripted import Script, ScriptedProvider


class RecordingProvider:
    """`recorded/<script name>`: plays the script, keeps the requests."""

    name = "recorded"

    def __init__(self, scripts: Iterable[Script]) -> None:
        self._scripted = ScriptedProvider(scripts)
        self.requests: list[ModelRequest] = []

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        self.requests.append(request)
        return self._scripted.stream(request)
