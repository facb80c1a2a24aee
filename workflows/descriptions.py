"""What the Temporal UI and `temporal workflow metadata` say of each signal, update and
query of a session (the UI lists them, with these words, where an operator sends one).
"""

from __future__ import annotations

SEND = (
    "Queue a user message (a SendRequest); answered in order. With interrupt set, the "
    "running turn is interrupted first."
)
SEND_MESSAGE = (
    "Queue a user message (a SendRequest) by its busy strategy (if_busy): enqueue, "
    "reject (refused TurnRunning while a turn runs), interrupt, or rollback (the running "
    "turn stopped and taken out of history first)."
)
FORK = (
    'Hand a fork its start: {"fork_workflow_id", "at_message_id"?}; returns the '
    "snapshot the fork starts from (history by reference). Only while idle; use "
    "sessionflow fork."
)
INTERRUPT = (
    "Stop the running turn, keeping what it produced (marked interrupted); queued "
    "messages still run. No input. The UI's Request Cancellation does the same."
)
WAIT_TURN = (
    "Wait for the turn answering an assistant message id to end; returns its outcome "
    "(null: ask the next run)."
)
APPROVE = (
    'Answer a pending tool approval: {"approval_id": "...", "approved": true|false, '
    '"reason": "..."}; returns the message id it belongs to.'
)
UPDATE = (
    "While idle: point the session at another sandbox, rewind to a message, or change the"
    ' step cap or webhook URL: {"sandbox_id"?, "last_message_id"?, "max_steps_per_turn"?,'
    ' "webhook_url"?}.'
)
CLOSE = (
    "End the session: kill its sandbox, end its stream and complete (a later send starts "
    "a new, empty session). Refused while a turn runs."
)
DELETE = (
    "Erase the session: stop its turn, kill its sandbox, erase its Redis keys and payload"
    " store objects, and complete. Use sessionflow delete (it also deletes the Temporal "
    "runs)."
)
SANDBOX_EXEC = (
    "Run a command in the session's sandbox (created if needed): an ExecRequest; returns "
    "exit code, stdout and stderr."
)
SANDBOX_STATUS = "The sandbox's status (running, paused, stopped), or null without one."
TRANSCRIPT = (
    "Where the messages are: a reference to the committed transcript and the fragments "
    "after it (a codec server shows the messages)."
)
MESSAGES = (
    'One page of messages: {"offset": 0, "limit": 50} (limit up to 200). Pages in '
    "committed messages are filled by sessionflow codec-server."
)
INFO = "Status, queued messages, message count, usage, sandbox and pending approvals."
USAGE = "Tokens and cost: totals, by model, per turn and per recent step."
STATE = "The agent's persisted state (null before the first step)."
