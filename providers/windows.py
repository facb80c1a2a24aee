"""Context windows of known models, in tokens, for compaction (`sessionflow.compaction`).

A small table by model-name prefix (the part after `provider/`), longest prefix first;
a model it does not know has no window, and its sessions never compact unless the
agent names one (`agent(..., context_window=...)`). Windows are the providers' default
ones (Anthropic's 1M-token window needs a beta header this runtime does not send).
"""

from __future__ import annotations

# (prefix of the model name, window), per provider.
WINDOWS: dict[str, tuple[tuple[str, int], ...]] = {
    "anthropic": (("claude-", 200_000),),
    "openai": (
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("gpt-4-turbo", 128_000),
        ("gpt-5", 400_000),
        ("o1", 200_000),
        ("o3", 200_000),
        ("o4-mini", 200_000),
    ),
}


def context_window(model_id: str) -> int | None:
    """The window of `provider/model`, if the table knows it."""
    provider, _, model = model_id.partition("/")
    for prefix, window in sorted(WINDOWS.get(provider, ()), key=lambda e: -len(e[0])):
        if model.startswith(prefix):
            return window
    return None
