"""Why an update is refused, said in its validator.

A validator's refusal writes nothing to history, so the client learns at once and the
session is untouched. Each refusal is an `ApplicationError` whose type names the error
the client raises (`sessionflow.errors`): `SessionContinuing` tells it to ask the next
run, the others reach the caller. Handlers that waited for the session's lock check
again what the validator checked, since a close or a rewind that held the lock may
have changed it meanwhile.
"""

from __future__ import annotations

from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import TranscriptRef
    from sessionflow.errors import (
        ApprovalNotPending,
        MessageNotFound,
        SessionBusy,
        SessionClosed,
        SessionContinuing,
    )
    from sessionflow.messages import Message


def refuse_if_continuing(continuing: bool) -> None:
    """The run is handing over to the next: the client asks that one."""
    if continuing:
        raise ApplicationError(
            "the session is continuing as new; ask again", type=SessionContinuing.__name__
        )


def refuse_if_closed(closing: bool) -> None:
    if closing:
        raise ApplicationError("the session is closing", type=SessionClosed.__name__)


def refuse_if_busy(busy: bool, what: str) -> None:
    """`what` cannot be done while a turn runs or messages are queued."""
    if busy:
        raise ApplicationError(what, type=SessionBusy.__name__)


def refuse_unknown(message_id: str) -> NoReturn:
    raise ApplicationError(
        f"no message {message_id!r} in this session", type=MessageNotFound.__name__
    )


def refuse_if_not_kept(
    message_id: str | None, transcript: TranscriptRef | None, tail: list[Message]
) -> None:
    """A rewind or fork to a message not in the tail, when nothing is committed (a
    message only committed is looked for by the rewind or fork itself)."""
    if message_id is None:
        return
    if transcript is None and all(m.id != message_id for m in tail):
        refuse_unknown(message_id)


def refuse_unless_pending(approval_id: str, pending: bool) -> None:
    if not pending:
        raise ApplicationError(
            f"approval {approval_id!r} is not pending in this session "
            "(unknown, already answered, or its turn ended)",
            type=ApprovalNotPending.__name__,
        )
