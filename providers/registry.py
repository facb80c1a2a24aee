"""Model providers by name, and resolution of `provider/model` strings.

A model id's prefix before `/` picks its provider. Besides the scripted provider
(built by each worker from its agents' scripts), every worker has one of each
registered provider (built in: `anthropic`, `openai`) and the extra providers named by
`SESSIONFLOW_PROVIDERS`, a comma-separated list of import paths `module:attr`:

    SESSIONFLOW_PROVIDERS=mypkg.models:GeminiProvider sessionflow worker --agents mypkg:agents

The attribute an import path names may be

- a `ModelProvider` instance (an object with `name` and `stream`): used as is;
- a class or any other callable returning one: called with no arguments if it needs
  none, else with the worker's `Settings` as its one positional argument.

An extra provider with a registered provider's name replaces it. Code the worker
imports anyway (its agents module, say) can instead call
`register_provider("gemini", factory)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from sessionflow.config import Settings, import_factory
from sessionflow.errors import InvalidInput, ModelNotFound
from sessionflow.providers.base import ModelProvider
from sessionflow.providers.scripted import PROVIDER, Script, ScriptedProvider

ProviderFactory = Callable[[Settings], ModelProvider]
VARIABLE = "SESSIONFLOW_PROVIDERS"


def _anthropic(settings: Settings) -> ModelProvider:
    from sessionflow.providers.anthropic import AnthropicProvider

    # Needs ANTHROPIC_API_KEY only when first used.
    return AnthropicProvider(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        max_tokens=settings.anthropic_max_tokens,
        thinking_budget=settings.anthropic_thinking_budget or None,
    )


def _openai(settings: Settings) -> ModelProvider:
    from sessionflow.providers.openai import OpenAIProvider

    # Needs OPENAI_API_KEY or OPENAI_BASE_URL only when used.
    return OpenAIProvider(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_tokens=settings.openai_max_tokens,
    )


_PROVIDERS: dict[str, ProviderFactory] = {"anthropic": _anthropic, "openai": _openai}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Give every worker built afterwards a provider for `<name>/<model>` ids, made by
    `factory(settings)`; registering a name again replaces its factory."""
    if not name or "/" in name or name != name.strip():
        raise InvalidInput(f"a model provider name must be a plain word, not {name!r}")
    if name == PROVIDER:
        raise InvalidInput(f"{PROVIDER!r} is the provider built from the agents' scripts")
    _PROVIDERS[name] = factory


def registered_providers() -> list[str]:
    """The registered provider names, built-ins first (the scripted one aside)."""
    return list(_PROVIDERS)


def is_model_provider(value: object) -> bool:
    """Whether `value` looks like a `ModelProvider` instance (not a class)."""
    return (
        not isinstance(value, type)
        and isinstance(getattr(value, "name", None), str)
        and callable(getattr(value, "stream", None))
    )


def with_registered_providers(
    providers: Iterable[ModelProvider], settings: Settings | None = None
) -> list[ModelProvider]:
    """`providers`, and one of each registered provider none of them is named like,
    built from `settings` (by default, the environment's: `Settings.from_env()`)."""
    given = list(providers)
    names = {p.name for p in given}
    settings = settings or Settings.from_env()
    return [*given, *(make(settings) for name, make in _PROVIDERS.items() if name not in names)]


def providers_from_settings(settings: Settings) -> list[ModelProvider]:
    """The providers `SESSIONFLOW_PROVIDERS` names, then the registered ones they do not
    replace, all built from `settings`. Raises `InvalidInput`, in one line, for an entry
    that does not name a provider."""
    configured: dict[str, ModelProvider] = {}
    for path in settings.providers:
        provider = _imported(path, settings)
        if provider.name == PROVIDER:
            raise InvalidInput(
                f"{VARIABLE} entry {path!r} is named {PROVIDER!r}, the provider built from "
                "the agents' scripts; give it another name"
            )
        if provider.name in configured:
            raise InvalidInput(
                f"{VARIABLE} entry {path!r} is a second provider named {provider.name!r}"
            )
        configured[provider.name] = provider
    return with_registered_providers(configured.values(), settings)


def _imported(path: str, settings: Settings) -> ModelProvider:
    try:
        make = import_factory(path, settings, "ModelProvider", is_model_provider)
    except (ImportError, ValueError) as err:
        raise InvalidInput(
            f"{VARIABLE} entry {path!r}: not an importable 'module:attr' of a provider ({err})"
        ) from None
    provider = make()
    if not is_model_provider(provider):
        raise InvalidInput(
            f"{VARIABLE} entry {path!r} gave {provider!r}, not a ModelProvider "
            "(an object with name and stream)"
        )
    return cast(ModelProvider, provider)


class ModelRegistry:
    """The providers one worker has, by name."""

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
                f"(configured: {known}; add one with {VARIABLE}=module:attr)"
            )
        return provider, model
