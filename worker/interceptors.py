"""Binds every activity's log lines to the session they work for.

Each line logged through structlog while an activity runs carries workflow id, run
id, session id, activity type and attempt, so one session's story can be pulled out
of a shared log stream. Never the turn's context: it is not in the activity's input.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from sessionflow.ids import parse_session_workflow_id


class BoundLogs(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindActivity(next)


class _BindActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        try:
            agent, session_id = parse_session_workflow_id(info.workflow_id or "")
        except ValueError:
            agent, session_id = None, None
        with structlog.contextvars.bound_contextvars(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            session_id=session_id,
            agent=agent,
            activity_type=info.activity_type,
            attempt=info.attempt,
        ):
            return await self.next.execute_activity(input)
