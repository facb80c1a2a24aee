"""How Sessionflow errors leave an activity: as typed Temporal application errors."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from sessionflow.errors import SessionflowError


def to_application_error(err: SessionflowError) -> ApplicationError:
    """Keep the error's class name as the type, and let `retryable` decide retries."""
    return ApplicationError(str(err), type=err.error_type, non_retryable=not err.retryable)
