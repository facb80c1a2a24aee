"""The session as user code sees it inside an activity: transient context and state.

Context is fetched from Redis by reference and validated against the agent's
`context_schema`; state arrives as JSON from the workflow and is handed to user
code as a `state_schema` instance (or a dict), then dumped back to JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import activity

from sessionflow.agents.definition import Agent
from sessionflow.errors import InvalidInput
from sessionflow.streams.context import ContextStore
from sessionflow.validation import describe


async def load_context(store: ContextStore, agent: Agent, workflow_id: str, ref: str | None) -> Any:
    """The turn's context, validated; raises InvalidInput (not retried: trying again
    cannot help) when it is missing but required, expired, or invalid."""
    schema = agent.context_schema
    if ref is None:
        if schema is None:
            return None
        try:
            return schema.model_validate({})
        except ValidationError as err:
            raise InvalidInput(
                f"this turn has no context, but agent {agent.name!r} requires one "
                f"({schema.__name__}: {describe(err, schema)}); send it with context=..."
            ) from None
    raw = await store.get(workflow_id, ref)
    if schema is None:
        return raw
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        # Declared field names and reasons only: context may hold secrets.
        raise InvalidInput(
            f"context does not match the agent's context_schema ({describe(err, schema)})"
        ) from None


def load_state(agent: Agent, state: dict[str, Any] | None) -> Any:
    if agent.state_schema is None:
        return dict(state or {})
    return agent.state_schema.model_validate(state or {})


def dump_state(state: Any) -> dict[str, Any]:
    if isinstance(state, BaseModel):
        return state.model_dump(mode="json")
    return dict(state)


def interrupted() -> bool:
    """Whether the activity was cancelled because the workflow asked (an interrupt),
    as opposed to a timeout or the worker shutting down, which must be retried."""
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested and not details.worker_shutdown
