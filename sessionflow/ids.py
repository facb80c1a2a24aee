"""How a session's workflow id is derived, in one place.

    workflow id = "session:" + agent + ":" + session_id

The agent name comes first so `temporal workflow list --query 'WorkflowId STARTS_WITH
"session:support:"'` finds one agent's sessions. Agent names may not contain ':',
so the id splits back unambiguously. Braces are refused in both parts because the
workflow id is the Redis Cluster hash tag of the session's stream keys.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "session:"
MAX_SESSION_ID_LENGTH = 200

# A tenant (an API key's owner at the gateway, `SESSIONFLOW_TENANT` at the command line).
TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Lone surrogates (a JSON "\ud800" escape) are refused too: they cannot be encoded
# for Temporal's gRPC API, so such an id failed with a raw UnicodeEncodeError.
_SESSION_ID = re.compile(r"^[^\s{}\x00-\x1f\x7f\ud800-\udfff]+$")


def validate_agent_name(name: str) -> str:
    if not _AGENT_NAME.match(name):
        raise ValueError(
            f"invalid agent name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_session_id(session_id: str) -> str:
    if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        raise ValueError(f"session id must be 1-{MAX_SESSION_ID_LENGTH} characters long")
    if not _SESSION_ID.match(session_id):
        raise ValueError(
            f"invalid session id {session_id!r}: no whitespace, control characters, braces "
            "or lone surrogates"
        )
    return session_id


def session_workflow_id(agent: str, session_id: str) -> str:
    """The workflow id of an agent's session."""
    return f"{PREFIX}{validate_agent_name(agent)}:{validate_session_id(session_id)}"


def parse_session_workflow_id(workflow_id: str) -> tuple[str, str]:
    """Split a session workflow id back into (agent, session_id)."""
    if not workflow_id.startswith(PREFIX):
        raise ValueError(f"{workflow_id!r} is not a session workflow id")
    agent, sep, session_id = workflow_id[len(PREFIX) :].partition(":")
    if not sep:
        raise ValueError(f"{workflow_id!r} is not a session workflow id")
    return validate_agent_name(agent), validate_session_id(session_id)


def tenant_of(session_id: str) -> str:
    """The tenant a session belongs to: the part of its id before the first ':' (the
    gateway names tenant `acme`'s session `chat-1` as `acme:chat-1`), else "" for ids
    without one. Sandboxes belong to a tenant (see `sandbox_owner`)."""
    tenant, sep, _ = session_id.partition(":")
    return tenant if sep else ""


def tenant_session_id(tenant: str | None, session_id: str) -> str:
    """The session id of tenant `tenant`'s session `session_id`: `<tenant>:<session_id>`,
    as the gateway names it (`session_id` itself without a tenant)."""
    return f"{tenant}:{session_id}" if tenant else session_id


def sandbox_owner(session_id: str) -> str:
    """Who may use a sandbox a session creates: every session of the same tenant (so
    `update(sandbox_id=...)` can hand one to another of the tenant's sessions), and
    nobody else."""
    return f"tenant:{tenant_of(session_id)}"


def webhook_event_id(workflow_id: str, event_type: str, key: str) -> str:
    """The idempotency key of one webhook event (`sessionflow.webhooks`): the same for
    the same session, event type and `key` (a turn's message id, an approval request's
    first approval id, a session run's first run id), so retries and replays of the
    workflow never make a second one. Pure: workflow code derives it."""
    digest = hashlib.sha256(f"{workflow_id}\n{event_type}\n{key}".encode()).hexdigest()
    return f"evt_{digest[:32]}"
