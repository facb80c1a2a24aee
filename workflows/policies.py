"""Timeouts and retry policies, one preset per kind of activity.

Heartbeat timeouts are what bound recovery: when a worker dies mid-activity, the
server notices the missing heartbeats after this long and schedules a retry on
another worker. Activities heartbeat every 0.4 s (see `activities.heartbeat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

# Business failures that retrying cannot fix; raised as non-retryable by activities too.
NON_RETRYABLE_ERRORS = [
    "AgentNotRegistered",
    "ModelNotFound",
    "InvalidModelRequest",
    "SandboxNotFound",
]


@dataclass(frozen=True)
class ActivityPreset:
    start_to_close: timedelta
    heartbeat: timedelta | None
    retry: RetryPolicy


MODEL_STEP = ActivityPreset(
    start_to_close=timedelta(minutes=10),
    heartbeat=timedelta(seconds=5),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=8,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)

TOOL = ActivityPreset(
    start_to_close=timedelta(minutes=30),
    heartbeat=timedelta(seconds=5),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)

SANDBOX_LIFECYCLE = ActivityPreset(
    start_to_close=timedelta(minutes=5),
    heartbeat=timedelta(seconds=10),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=20),
        maximum_attempts=10,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)

# Local activity: a handful of stream chunks the workflow decides on itself.
PUBLISH = ActivityPreset(
    start_to_close=timedelta(seconds=10),
    heartbeat=None,
    retry=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=200)),
)
