"""Sessionflow's errors, one tree for client, worker and gateway.

    SessionflowError
    ├── ConnectionFailed        Temporal or Redis cannot be reached
    ├── WorkerUnavailable       no worker polls the session's task queue
    ├── InvalidInput            a message, id, context or option that cannot be accepted
    │   ├── ApprovalNotPending  an approval for an unknown or already-answered request
    │   └── MessageNotFound     a message id the session does not have
    ├── SessionBusy             the operation needs an idle session
    ├── SessionNotFound         no session with that id (for that agent)
    ├── AgentNotRegistered      no worker serves the agent
    ├── ModelNotFound           the agent's model names an unknown provider or script
    ├── ModelError              the model call failed
    │   ├── ModelUnavailable    transient: rate limited, overloaded, cut off (retried)
    │   └── InvalidModelRequest the provider refused the request (not retried)
    ├── TurnFailed              a turn ended in failure (raised by `SendResult.done` on request)
    └── SandboxError            a sandbox could not do what was asked (retried)
        ├── SandboxNotFound     the sandbox id names nothing (anymore)
        └── SandboxRefused      the backend refused: bad credentials, quota, bad path

Inside activities the class name becomes the Temporal `ApplicationError` type, so a
client or an ops person can match on it; `retryable` says whether Temporal should try
again.
"""

from __future__ import annotations

from typing import ClassVar


class SessionflowError(Exception):
    """Base of every error Sessionflow raises on purpose."""

    retryable: ClassVar[bool] = False

    @property
    def error_type(self) -> str:
        return type(self).__name__


class ConnectionFailed(SessionflowError):
    retryable = True


class StreamUnavailable(ConnectionFailed):
    """Redis stayed unreachable longer than a stream reader waits for it to return."""


class TemporalUnavailable(ConnectionFailed):
    """The Temporal server did not answer (it is down or restarting)."""


class WorkerUnavailable(SessionflowError):
    retryable = True


class InvalidInput(SessionflowError, ValueError):
    pass


class ApprovalNotPending(InvalidInput):
    pass


class MessageNotFound(InvalidInput):
    pass


class SessionBusy(SessionflowError):
    pass


class SessionNotFound(SessionflowError):
    pass


class AgentNotRegistered(SessionflowError):
    pass


class ModelNotFound(SessionflowError):
    pass


class ModelError(SessionflowError):
    pass


class ModelUnavailable(ModelError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Seconds the provider asked us to wait before trying again, if it said.
        self.retry_after = retry_after


class InvalidModelRequest(ModelError):
    pass


class TurnFailed(SessionflowError):
    pass


class SandboxError(SessionflowError):
    retryable = True


class SandboxNotFound(SandboxError):
    retryable = False


class SandboxRefused(SandboxError):
    retryable = False
