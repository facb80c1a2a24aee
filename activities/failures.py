"""How Sessionflow errors leave an activity: as typed Temporal application errors."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from sessionflow.activities.limits import capped_text
from sessionflow.errors import SessionflowError


def to_application_error(err: SessionflowError) -> ApplicationError:
    """Keep the error's class name as the type, let `retryable` decide retries, and
    honour a provider's retry-after as the next retry delay."""
    retry_after = getattr(err, "retry_after", None)
    return ApplicationError(
        # Capped: an error's text is recorded in history and must never be too big to.
        capped_text(str(err)),
        type=err.error_type,
        non_retryable=not err.retryable,
        next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
    )
