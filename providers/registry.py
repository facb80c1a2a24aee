"""Model providers by name, and resolution of `provider/model` strings."""

from __future__ import annotations

from collections.abc import Iterable

from sessionflow.errors import ModelNotFound
from sessionflow.providers.base import ModelProvider
from sessionflow.providers.scripted import PROVIDER, Script, ScriptedProvider


class ModelRegistry:
    def __init__(self, providers: Iterable[ModelProvider]) -> None:
        self._providers = {p.name: p for p in providers}

    def resolve(self, model_id: str | Script) -> tuple[ModelProvider, str]:
        """Split `provider/model` and find the provider; raises `ModelNotFound`.

        A `Script` (from a resolvable `model` option) is taught to the scripted
        provider on the way.
        """
        if isinstance(model_id, Script):
            scripted = self._providers.get(PROVIDER)
            if not isinstance(scripted, ScriptedProvider):
                raise ModelNotFound("this worker has no scripted provider")
            scripted.add(model_id)
            return scripted, model_id.name
        provider_name, sep, model = model_id.partition("/")
        if not sep or not model:
            raise ModelNotFound(f"model must look like 'provider/model', got {model_id!r}")
        provider = self._providers.get(provider_name)
        if provider is None:
            known = ", ".join(sorted(self._providers)) or "none"
            raise ModelNotFound(
                f"model provider {provider_name!r} is not configured on this worker "
                f"(configured: {known})"
            )
        return provider, model
