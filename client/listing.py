"""Finding sessions through Temporal visibility, for `sessionflow sessions` and ops tools."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client

from sessionflow.contract import WORKFLOW_NAME
from sessionflow.ids import parse_session_workflow_id
from sessionflow.workflows import search


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    agent: str
    status: str
    tokens: int
    pending_approvals: int
    last_activity: datetime | None
    workflow_id: str


def _quoted(value: str) -> str:
    """A string literal for a visibility query (JSON's quoting is compatible)."""
    return json.dumps(value)


async def list_sessions(
    temporal: Client,
    *,
    status: str | None = None,
    agent: str | None = None,
    prefix: str | None = None,
    limit: int = 50,
) -> list[SessionRow]:
    """Running sessions, newest activity first; `prefix` filters session ids."""
    query = f'WorkflowType = "{WORKFLOW_NAME}" AND ExecutionStatus = "Running"'
    if status:
        query += f" AND {search.STATUS.name} = {_quoted(status)}"
    if agent:
        query += f" AND {search.AGENT.name} = {_quoted(agent)}"
    rows: list[SessionRow] = []
    # Ids are filtered here, not in the query (the agent comes first in a workflow id),
    # so look at more sessions than asked for when filtering.
    scan = limit if prefix is None else min(limit * 10, 5_000)
    async for execution in temporal.list_workflows(query, limit=scan):
        values = {p.key.name: p.value for p in execution.typed_search_attributes}
        try:
            agent_name, session_id = parse_session_workflow_id(execution.id)
        except ValueError:
            continue
        if prefix is not None and not session_id.startswith(prefix):
            continue
        rows.append(
            SessionRow(
                session_id=session_id,
                agent=agent_name,
                status=str(values.get(search.STATUS.name, "?")),
                tokens=int(values.get(search.TOKENS.name, 0) or 0),
                pending_approvals=int(values.get(search.PENDING_APPROVALS.name, 0) or 0),
                last_activity=values.get(search.LAST_ACTIVITY.name),
                workflow_id=execution.id,
            )
        )
    epoch = datetime.min.replace(tzinfo=None)
    rows.sort(
        key=lambda r: r.last_activity.replace(tzinfo=None) if r.last_activity else epoch,
        reverse=True,
    )
    return rows[:limit]
