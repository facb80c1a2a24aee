"""Sessionflow's errors, one tree for client, worker and gateway.

    SessionflowError
    ├── ConnectionFailed        Temporal or Redis cannot be reached
    │   └── MCPServerUnavailable  an MCP server cannot be reached or dropped the connection
    ├── WorkerUnavailable       no worker polls the session's task queue
    ├── SessionStuck            the session's workflow task keeps failing (the cause is named)
    ├── InvalidInput            a message, id, context or option that cannot be accepted
    │   ├── JsonTooDeep         JSON nested deeper than sessions accept (json_limits)
    │   ├── ApprovalNotPending  an approval for an unknown or already-answered request
    │   ├── MessageNotFound     a message id the session does not have
    │   ├── CursorOutOfRange    a stream cursor past the stream's newest chunk
    │   └── WebhookSignatureInvalid  a webhook's signature does not verify (or is too old)
    ├── SessionBusy             the operation needs an idle session
    │   └── TurnRunning         a send with if_busy="reject" came while a turn ran
    ├── SessionEnded            the session's latest run has ended: writes are refused (409)
    │   ├── SessionClosed       it completed: the session was closed
    │   └── SessionFailed       it failed, was terminated, timed out or cancelled (cause named)
    ├── SessionContinuing       internal: the run is continuing as new (the client asks again)
    ├── TooManyWaiting          a tenant holds as many long requests as it may (429)
    │   └── GatewayBusy         the gateway holds as many long requests as it may (503)
    ├── SessionNotFound         no session with that id (for that agent)
    ├── SessionExists           a fork's new id names a session that runs
    ├── ScheduleNotFound        no schedule with that name (for that session)
    ├── WebhookRefused          a webhook URL the worker will not call (not retried)
    ├── AgentNotRegistered      no worker serves the agent
    ├── AgentOptionFailed       a resolvable option (system, model, active_tools) raised
    ├── PayloadTooLarge         a step's result too large to record, even capped
    ├── ModelNotFound           the agent's model names an unknown provider or script
    ├── PriceUnknown            a cost budget applies and the model has no price
    ├── ModelError              the model call failed
    │   ├── ModelUnavailable    transient: rate limited, overloaded, cut off (retried)
    │   └── InvalidModelRequest the provider refused the request (not retried)
    │       └── ContextTooLarge the request does not fit the model's window, even compacted
    ├── MCPServerRefused        an MCP server cannot be used as configured (not retried)
    ├── TurnFailed              a turn ended in failure (`TurnOutcome.raise_for_failure()`)
    └── SandboxError            a sandbox could not do what was asked (retried)
        ├── SandboxNotFound     the sandbox id names nothing (anymore)
        └── SandboxRefused      the backend refused: bad credentials, quota, bad path
            └── FileTooLarge    a file larger than the operation reads whole

Inside activities and workflow handlers the class name becomes the Temporal
`ApplicationError` type, so a client or an ops person can match on it. This module is
the one table of what each error means: `retryable` (whether Temporal tries again),
`http_status` and `code` (the gateway's answer); `by_type` turns a type name back into
its class, and `NON_RETRYABLE` lists what retry policies must never retry.
"""

from __future__ import annotations

from typing import ClassVar


class SessionflowError(Exception):
    """Base of every error Sessionflow raises on purpose."""

    retryable: ClassVar[bool] = False
    # The gateway's answer: HTTP status and the `error.code` of its JSON body.
    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    @property
    def error_type(self) -> str:
        return type(self).__name__


class ConnectionFailed(SessionflowError):
    retryable = True
    http_status = 503
    code = "backend_unavailable"


class StreamUnavailable(ConnectionFailed):
    """Redis stayed unreachable longer than a stream reader waits for it to return."""


class TemporalUnavailable(ConnectionFailed):
    """The Temporal server did not answer (it is down or restarting)."""


class MCPServerUnavailable(ConnectionFailed):
    """An agent's MCP server did not answer: down, restarting, or it dropped the
    connection. Retried, like any infrastructure trouble."""


class WorkerUnavailable(SessionflowError):
    retryable = True
    http_status = 503
    code = "worker_unavailable"


class InvalidInput(SessionflowError, ValueError):
    http_status = 422
    code = "invalid_input"


class JsonTooDeep(InvalidInput):
    """JSON nested deeper than a session accepts (`sessionflow.json_limits`): past about
    200 levels Temporal cannot decode what carries it, and the session would wedge."""

    code = "json_too_deep"


class ApprovalNotPending(InvalidInput):
    http_status = 409
    code = "approval_not_pending"


class MessageNotFound(InvalidInput):
    http_status = 404
    code = "message_not_found"


class CursorOutOfRange(InvalidInput):
    """A resume cursor past the stream's newest chunk: it names no chunk ever sent."""

    http_status = 416
    code = "cursor_out_of_range"


class WebhookSignatureInvalid(InvalidInput):
    """A webhook request whose `Sessionflow-Signature` does not match its body and
    secret, is malformed, or was signed longer ago than the tolerance allows."""

    http_status = 400
    code = "webhook_signature_invalid"


class SessionStuck(SessionflowError):
    """Temporal keeps failing the session's workflow task (a bug or a payload it cannot
    record): workers are there, retrying will not help until the cause is fixed."""

    http_status = 500
    code = "session_stuck"


class SessionBusy(SessionflowError):
    http_status = 409
    code = "session_busy"


class TurnRunning(SessionBusy):
    """A send with `if_busy="reject"` arrived while a turn ran or messages waited: the
    message was not queued (decided by the session itself, so atomically against a
    turn ending at that moment). Send again once the turn has ended."""

    code = "turn_running"


class SessionExists(SessionflowError):
    """A fork was asked to start under the id of a session that is running."""

    http_status = 409
    code = "session_exists"


class SessionEnded(SessionflowError):
    """The session's latest run has ended, so nothing can change it: approvals, closes,
    interrupts, updates, sandbox commands and waits on its answers are refused at once
    rather than asked again forever. Its history, usage and info can still be read
    while Temporal keeps the run, and a `send` starts a new, empty session under the
    same id.

    409, not 410: the session is still there to read, and the same id takes a new one;
    what conflicts is the request with the session's state."""

    http_status = 409
    code = "session_ended"


class SessionClosed(SessionEnded):
    """The latest run completed: the session was closed (`Session.close()`)."""

    code = "session_closed"


class SessionFailed(SessionEnded):
    """The latest run did not complete: it failed, or was terminated, timed out or
    cancelled (from the Temporal UI, say). The message names the cause: the failure's
    message, or `terminated: <reason>`."""

    code = "session_failed"


class SessionContinuing(SessionflowError):
    """The run is continuing as new (it waits for its handlers, e.g. a long
    `sandbox.exec`, before it hands over): a workflow handler refuses with this type,
    which writes no history, and the client asks the newest run again after a backoff.
    Internal: a caller sees it only if it reached the gateway, as a 503 to retry."""

    retryable = True
    http_status = 503
    code = "session_continuing"
    # Seconds to wait before trying again (the gateway's Retry-After).
    retry_after: ClassVar[float] = 1.0


class TooManyWaiting(SessionflowError):
    """A tenant holds as many long-lived requests (streams, long-polls) as it may;
    `retry_after` is how long (s) to wait before trying again (the gateway sends it as
    `Retry-After`)."""

    retryable = True
    http_status = 429
    code = "too_many_streams"

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GatewayBusy(TooManyWaiting):
    """The gateway process holds as many long-lived requests as it may, in all."""

    http_status = 503
    code = "server_busy"


class SessionNotFound(SessionflowError):
    http_status = 404
    code = "session_not_found"


class ScheduleNotFound(SessionflowError):
    http_status = 404
    code = "schedule_not_found"


class WebhookRefused(SessionflowError):
    """A webhook URL the worker will not call: not http(s), or one that resolves to a
    private, loopback or link-local address (unless SESSIONFLOW_WEBHOOK_ALLOW_PRIVATE),
    or no secret to sign with. Its delivery is not retried."""

    code = "webhook_refused"


class AgentNotRegistered(SessionflowError):
    http_status = 404
    code = "agent_not_registered"


class AgentOptionFailed(SessionflowError):
    """User code in a resolvable option raised: it runs again with the same inputs on
    a retry, so the turn fails at once, naming the option."""

    http_status = 500
    code = "agent_option_failed"


class PayloadTooLarge(SessionflowError):
    """A step produced more than Temporal can record even after capping."""

    http_status = 500
    code = "payload_too_large_to_record"


class ModelNotFound(SessionflowError):
    http_status = 422
    code = "model_not_found"


class PriceUnknown(SessionflowError):
    """A cost budget applies to the turn, and the step's model has no price to count
    its cost by (`agent(prices=...)`, `SESSIONFLOW_PRICES`): the model is not called,
    since a budget that cannot be counted would not stop anything."""

    http_status = 422
    code = "price_unknown"


class ModelError(SessionflowError):
    http_status = 502
    code = "model_error"


class ModelUnavailable(ModelError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Seconds the provider asked us to wait before trying again, if it said.
        self.retry_after = retry_after


class InvalidModelRequest(ModelError):
    pass


class ContextTooLarge(InvalidModelRequest):
    """A request larger than the model's context window even after compaction (one
    giant message): its turn fails at once and is left out of what later turns send."""

    http_status = 413
    code = "context_too_large"


class MCPServerRefused(SessionflowError):
    """An agent's MCP server cannot be used as configured: its command does not start,
    its URL or credentials are wrong, or its tool names clash. Retrying will not help."""

    http_status = 502
    code = "mcp_server_refused"


class TurnFailed(SessionflowError):
    http_status = 500
    code = "turn_failed"


class SandboxError(SessionflowError):
    retryable = True
    http_status = 502
    code = "sandbox_error"


class SandboxNotFound(SandboxError):
    retryable = False
    http_status = 404
    code = "sandbox_not_found"


class SandboxRefused(SandboxError):
    retryable = False
    http_status = 422
    code = "sandbox_refused"


class FileTooLarge(SandboxRefused):
    """`size` is the file's size in bytes when known, `limit` the most that was allowed."""

    def __init__(self, message: str, *, size: int | None = None, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


def _tree(root: type[SessionflowError]) -> list[type[SessionflowError]]:
    return [root, *(c for sub in root.__subclasses__() for c in _tree(sub))]


ALL: dict[str, type[SessionflowError]] = {cls.__name__: cls for cls in _tree(SessionflowError)}

# Error types a retry policy must not retry (activities also mark them non-retryable).
NON_RETRYABLE: list[str] = sorted(name for name, cls in ALL.items() if not cls.retryable)


def by_type(error_type: str | None) -> type[SessionflowError] | None:
    """The class whose name is an `ApplicationError` type, if it is one of ours."""
    return ALL.get(error_type or "")
