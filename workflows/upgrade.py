"""Upgrade on continue-as-new: an opted-in session moves to the current build.

A session is pinned to the build (Worker Deployment version) it started on, so a
session idle for weeks keeps an old build's workers alive and never runs new code.
With `SessionLimits.upgrade_on_new_build` on, a message that finds the deployment's
target build changed (another build made current, or ramping to this session) first
continues the session as new, and the new run starts on the target build and answers
the message there (Temporal's "upgrade on continue-as-new": each run stays pinned, so
no run ever replays on code that did not record it). Any other continue-as-new of such
a session (a long history) moves it the same way.

The price is a promise per release: the new build must accept every `SessionInput`
and `SessionSnapshot` an older build carries over (see the README, "Moving long idle
sessions to new code"). Off by default, and for runs started before the option.

The flag Temporal sets (`is_target_worker_deployment_version_changed`) comes with each
workflow task and is recorded in history, so reading it replays the same.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import SessionLimits


def due(limits: SessionLimits) -> bool:
    """Whether the session should move to another build before its next turn."""
    if not limits.upgrade_on_new_build:
        return False
    return workflow.info().is_target_worker_deployment_version_changed()


def behavior(limits: SessionLimits) -> workflow.ContinueAsNewVersioningBehavior | None:
    """How the next run chooses its build: the target build for an opted-in session,
    else the build this run is pinned to (Temporal's default)."""
    if limits.upgrade_on_new_build:
        return workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE
    return None
