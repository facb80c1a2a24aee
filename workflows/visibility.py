"""How a session shows itself to operators: the Temporal UI's details line and its
search attributes (`workflows.search`).

Both are set only when what they show has changed, and the search attributes only as
a turn starts and ends and as approvals are asked for and answered: each upsert is a
visibility write, the costliest thing a turn asks of the server. The details line
costs the server nothing (a query answers it), so a tool starting or ending, which
flips the status between `streaming` and `running-tool`, changes the details alone.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import SessionStatus
    from sessionflow.ids import tenant_of
    from sessionflow.workflows import search

# A tool starting or ending flips the status between these two: the UI's details show
# it, while search attributes keep the turn's status.
TOOL_FLIP = frozenset({SessionStatus.STREAMING, SessionStatus.RUNNING_TOOL})


class Visibility:
    def __init__(self, session_id: str, agent: str, *, searchable: bool) -> None:
        self._session_id = session_id
        self._agent = agent
        self._searchable = searchable
        self._indexed: dict[str, object] = {}

    def show(
        self,
        status: SessionStatus,
        *,
        tokens: int,
        pending: int,
        messages: Callable[[], int],
        details_only: bool = False,
    ) -> None:
        """Show the session's state in the details line and, unless `details_only`, in
        its search attributes; nothing is written when the state shown is unchanged."""
        if details_only:
            self._describe(status, tokens=tokens, pending=pending, messages=messages())
            return
        values: dict[str, object] = {
            "status": status.value,
            "tokens": tokens,
            "pending": pending,
        }
        if values == self._indexed:
            return
        self._indexed = values
        self._describe(status, tokens=tokens, pending=pending, messages=messages())
        if self._searchable:
            tenant = tenant_of(self._session_id)
            workflow.upsert_search_attributes(
                [
                    search.AGENT.value_set(self._agent),
                    *([search.TENANT.value_set(tenant)] if tenant else []),
                    search.STATUS.value_set(status.value),
                    search.TOKENS.value_set(tokens),
                    search.PENDING_APPROVALS.value_set(pending),
                    search.LAST_ACTIVITY.value_set(workflow.now()),
                ]
            )

    def _describe(self, status: SessionStatus, *, tokens: int, pending: int, messages: int) -> None:
        waiting = f", {pending} approval(s) pending" if pending else ""
        workflow.set_current_details(
            f"{status.value}{waiting} · {messages} messages · {tokens} tokens · agent {self._agent}"
        )
