"""Continue-as-new: a run hands the session over to a fresh one.

A run continues as new when its history grows long (Temporal suggests it, or the
session's own limits on events and bytes are reached), after it handled a cancel
request (the server records one per run: the next must reach a fresh run,
`workflows.cancels`), and before a message when the session moves to a new build
(`workflows.upgrade`). Only between turns, so no turn is ever cut in two.

The next run starts from a snapshot of the session (`SessionSnapshot`): its transcript
by reference, the uncommitted fragments, queued messages, usage, remembered outcomes,
sandbox, state and webhooks. The snapshot is taken once every handler has finished (an
exec may have made a sandbox, a send may have queued meanwhile), so nothing
acknowledged is left behind, and once the run's webhook starts are acknowledged.
"""

from __future__ import annotations

from typing import NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import SessionInput, SessionLimits
    from sessionflow.workflows import upgrade


def history_is_long(limits: SessionLimits) -> bool:
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() >= limits.continue_as_new_after_events
        or info.get_current_history_size() >= limits.continue_as_new_after_bytes
    )


def hand_over(input: SessionInput) -> NoReturn:
    """Start the next run with `input` (this run ends here)."""
    workflow.continue_as_new(input, initial_versioning_behavior=upgrade.behavior(input.limits))
