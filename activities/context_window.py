"""Fitting a model step's request into the model's window (`sessionflow.compaction`).

Run by the model-step activity before it calls the model: the request is estimated as
the model would see it under the session's compaction, and either goes out that way,
or the step asks the workflow to compact first (the model is not called), or, when no
compaction can bring it under the window (one giant message), fails its turn at once
with `ContextTooLarge`, naming the size and the window.
"""

from __future__ import annotations

from sessionflow.agents.definition import Agent
from sessionflow.compaction import (
    CompactionRecord,
    estimate_tokens,
    message_tokens,
    propose,
    sent_messages,
    with_summary,
)
from sessionflow.errors import ContextTooLarge
from sessionflow.messages import Message
from sessionflow.providers.base import ModelRequest
from sessionflow.providers.windows import context_window


def window_of(agent: Agent, model_id: str) -> int | None:
    """The agent's window override, else the one the table knows for the model."""
    return agent.context_window or context_window(model_id)


def fit_to_window(
    agent: Agent, model_id: str, request: ModelRequest, current: CompactionRecord | None
) -> list[Message] | CompactionRecord:
    """The messages to send, or the compaction to make first. Raises `ContextTooLarge`
    for a request over the window that no compaction can shrink."""
    current = with_summary(current, request.messages)
    sent = sent_messages(request.messages, current)
    window = window_of(agent, model_id)
    if window is None:
        return sent
    fixed = estimate_tokens(request.system, [t.model_dump() for t in request.tools], [])
    tokens = fixed + sum(message_tokens(sent))
    options = agent.compaction
    if options is not None and tokens > options.threshold * window:
        proposal = propose(
            request.messages,
            current,
            fixed_tokens=fixed,
            tokens=tokens,
            window=window,
            options=options,
        )
        if proposal is not None:
            return proposal
    if tokens > window:
        how = "even compacted" if options is not None else "and compaction is off"
        raise ContextTooLarge(
            f"the request is about {tokens} tokens, more than {model_id}'s context window "
            f"of {window} tokens ({how}); send a shorter message"
        )
    return sent
