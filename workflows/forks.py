"""Forks: a new session whose history is this one's up to a message.

The parent's `fork` update (under the session's lock, so no turn commits meanwhile)
answers the snapshot the fork starts from; the client then starts the fork's workflow
with it. Nothing grows with the transcript: the committed part is handed over by
reference (the same segments, `TranscriptRef.keep` cutting the one that holds the
fork's last message), after a hold on the parent's namespace keeps those segments for
the fork even once the parent is deleted (`storage.namespaces`); only the uncommitted
tail, bounded by the commit threshold, is copied.

State: the agent state as of the fork's last message. The session remembers the state
before each turn (as of its user message) and after it (as of its answer) for the
messages of its newest `2 * remembered_outcomes` entries; a fork at an older message of
a session that has state is refused (`InvalidInput`) rather than given a wrong one.

Sandbox: the fork gets none; its first tool call creates a fresh, empty one. No sandbox
backend can snapshot a workspace yet (neither local nor E2B in this interface).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import (
        ActivityName,
        ForkRequest,
        ForkTranscriptParams,
        SessionSnapshot,
        TranscriptRef,
    )
    from sessionflow.errors import InvalidInput, MessageNotFound
    from sessionflow.messages import Message
    from sessionflow.workflows import calls, policies


def remember_state(
    states: dict[str, dict[str, Any] | None],
    message_id: str,
    state: dict[str, Any] | None,
    limit: int,
) -> None:
    """Record the agent state as of `message_id`, forgetting the oldest past `limit`."""
    states.pop(message_id, None)
    states[message_id] = state
    while len(states) > limit:
        del states[next(iter(states))]


def state_at(
    states: dict[str, dict[str, Any] | None],
    message_id: str | None,
    current: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The agent state as of `message_id` (None: now)."""
    if message_id is None:
        return current
    if message_id in states:
        return states[message_id]
    if current is None and not any(s is not None for s in states.values()):
        return None  # an agent without state: nothing to get wrong
    raise ApplicationError(
        f"the agent state as of message {message_id!r} is no longer remembered (only "
        "that of recent turns is): fork at a later message",
        type=InvalidInput.__name__,
    )


async def fork_snapshot(
    request: ForkRequest,
    *,
    transcript: TranscriptRef | None,
    tail: list[Message],
    states: dict[str, dict[str, Any] | None],
    state: dict[str, Any] | None,
) -> SessionSnapshot:
    """What the fork starts from. Everything that can refuse the fork (an unknown
    message, a state no longer remembered) is checked before the hold is placed, so
    a refused fork holds nothing."""
    at = request.at_message_id
    kept = [i for i, m in enumerate(tail) if m.id == at] if at is not None else [len(tail) - 1]
    if at is not None and not kept and transcript is None:
        raise ApplicationError(f"no message {at!r} in this session", type=MessageNotFound.__name__)
    fork_tail = [m.model_copy(deep=True) for m in tail[: kept[-1] + 1]] if kept else []
    fork_transcript = transcript
    params = ForkTranscriptParams(
        workflow_id=workflow.info().workflow_id,
        fork_workflow_id=request.fork_workflow_id,
        head=transcript or TranscriptRef(driver="", claim={}, messages=0, last_id=""),
    )
    if transcript is not None and not kept:
        # The fork ends in the committed part: cut the segment that holds its end.
        cut = params.model_copy(update={"last_message_id": at, "hold": False})
        fork_transcript = await _fork_transcript(cut)
    fork_state = state_at(states, at, state)
    if transcript is not None:
        await _fork_transcript(params)
    return SessionSnapshot(transcript=fork_transcript, messages=fork_tail, state=fork_state)


async def _fork_transcript(params: ForkTranscriptParams) -> TranscriptRef:
    return await calls.local_or_refused(
        ActivityName.FORK_TRANSCRIPT,
        params,
        policies.TRANSCRIPT,
        summary=f"fork the transcript for {params.fork_workflow_id}",
        result_type=TranscriptRef,
    )
