"""What a send does when a turn is running: the busy-session strategies (`IfBusy`).

The decision is the session's, made in the `send_message` update's validator and
handler, which run back to back in one step of the workflow's event loop: between
"is a turn running?" and acting on the answer nothing else of the session runs, so a
turn that ends at the same moment has either ended (its answer recorded as it was;
the message is simply answered next) or has not (the strategy applies to it). Never
half of each: a message refused while the session was in fact idle, or a rollback
that took out an answer its caller was already told had finished.

- `enqueue`: queued behind the running turn and any queued messages.
- `reject`: refused (`TurnRunning`, HTTP 409) while a turn runs or messages are
  queued; nothing is queued and nothing is written to history (a validator's refusal).
- `interrupt`: the running turn is interrupted (partial answer kept), then the
  message runs, as the `send` signal with `interrupt` does.
- `rollback`: the running turn is interrupted and taken out of history, its user
  message and answer both, and the agent state put back as it was before it; the
  message then runs after any queued ones. Its outcome is `rolled_back`. What cannot
  be undone stays: tokens spent (usage counts them), the stream's chunks (readers saw
  an `abort`) and whatever its tools did in the sandbox.

A turn that is only committing its finished answer (`SessionWorkflow.turn` is None
already) counts as ended: its answer stays and the message runs next.

Why not wait for the session's lock (the safe-message-handlers pattern), as `update`
and `close` do: a turn holds it from taking its message to committing its answer, so a
send waiting for it would wait for the turn's end, the opposite of `reject`, `interrupt`
and `rollback`. The handler only reads and flags (no await, so nothing interleaves);
the rollback itself, putting the conversation back, is done by the turn's own
`_take_turn` while it still holds the lock, before anything else may change the
conversation, so no other handler ever sees the rolled-back turn half undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import IfBusy, SendRequest, TranscriptRef
    from sessionflow.errors import TurnRunning
    from sessionflow.messages import Message


def refuse_if_rejected(request: SendRequest, *, turn_running: bool, queued: int) -> None:
    """The validator's half: a `reject` send while the session is busy fails here,
    before anything is recorded."""
    if request.if_busy is IfBusy.REJECT and (turn_running or queued):
        what = "a turn is running" if turn_running else f"{queued} message(s) are queued"
        raise ApplicationError(
            f"the session is busy ({what}) and the message was sent with "
            "if_busy='reject': it was not queued; send it again once the turn has ended",
            type=TurnRunning.__name__,
        )


@dataclass
class BeforeTurn:
    """The conversation as it stood before a turn began: what a rollback restores.

    Holding it costs nothing that grows with the session: the committed transcript is
    a reference to immutable segments, and the uncommitted tail is bounded by the
    commit threshold."""

    transcript: TranscriptRef | None
    tail: list[Message]
    state: dict[str, Any] | None

    @classmethod
    def of(
        cls, transcript: TranscriptRef | None, tail: list[Message], state: dict[str, Any] | None
    ) -> BeforeTurn:
        # Copies: the turn appends to the tail list and mutates nothing already in it
        # but its own reply, which is not among these.
        return cls(transcript=transcript, tail=list(tail), state=state)
