"""Timeouts and retry policies, one preset per kind of activity.

Heartbeat timeouts are what bound recovery: when a worker dies mid-activity, the
server notices the missing heartbeats after this long and schedules a retry on
another worker. Running steps heartbeat every 2 s, other activities every 0.4 s (see
`activities.heartbeat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sessionflow import errors
    from sessionflow.contract import ActivitySettings

# Business failures that retrying cannot fix (activities raise them non-retryable too).
NON_RETRYABLE_ERRORS = errors.NON_RETRYABLE


@dataclass(frozen=True)
class ActivityPreset:
    start_to_close: timedelta
    heartbeat: timedelta | None
    retry: RetryPolicy

    def overridden_by(self, settings: ActivitySettings | None) -> ActivityPreset:
        """This preset with an agent's or a tool's settings applied over it."""
        if settings is None:
            return self
        retry = self.retry
        return ActivityPreset(
            start_to_close=settings.start_to_close or self.start_to_close,
            heartbeat=settings.heartbeat or self.heartbeat,
            retry=RetryPolicy(
                initial_interval=settings.initial_retry_interval or retry.initial_interval,
                backoff_coefficient=retry.backoff_coefficient,
                maximum_interval=settings.max_retry_interval or retry.maximum_interval,
                maximum_attempts=settings.max_attempts or retry.maximum_attempts,
                non_retryable_error_types=retry.non_retryable_error_types,
            ),
        )


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

# The summarising step of a compaction: a model call like a step, retried the same way.
COMPACTION = MODEL_STEP

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

# Local activity: one Redis HINCRBY telling a running step to heartbeat now. Once: it
# only speeds the cancel up, which lands on a slow heartbeat anyway.
ANNOUNCE_INTERRUPT = ActivityPreset(
    start_to_close=timedelta(seconds=2),
    heartbeat=None,
    retry=RetryPolicy(maximum_attempts=1),
)

# Local activity: one Redis DEL when a turn that carried context has ended.
FORGET_CONTEXT = ActivityPreset(
    start_to_close=timedelta(seconds=10),
    heartbeat=None,
    retry=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=200)),
)

# Local activity: one segment written to the payload store (or read, to rewind). A
# store that stays down leaves the messages uncommitted in the workflow until later.
TRANSCRIPT = ActivityPreset(
    start_to_close=timedelta(seconds=30),
    heartbeat=None,
    retry=RetryPolicy(
        maximum_attempts=5,
        initial_interval=timedelta(milliseconds=200),
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)

# A session's end: Redis keys (one SCAN and a few UNLINKs) and, when it is deleted, its
# payload store namespace. Retried a while; an end that still fails is logged (a closed
# session's keys expire with their TTL), a delete that still fails is refused.
ERASE = ActivityPreset(
    start_to_close=timedelta(minutes=2),
    heartbeat=None,
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=20),
        maximum_attempts=8,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)

# A webhook is retried until it is delivered or its event is older than the worker's
# SESSIONFLOW_WEBHOOK_RETRY_FOR (the activity gives up then); the activity picks each
# pause itself (SESSIONFLOW_WEBHOOK_MAX_RETRY_INTERVAL), these are the fallback. The
# week bounds a worker that never gives up (a setting changed on the way).
WEBHOOK = ActivityPreset(
    start_to_close=timedelta(minutes=2),
    heartbeat=None,
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=0,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)
WEBHOOK_SCHEDULE_TO_CLOSE = timedelta(days=7)

# A scheduled send is one signal-with-start: retried briefly, then the schedule's run
# fails (the schedule itself goes on).
SCHEDULED_SEND = ActivityPreset(
    start_to_close=timedelta(seconds=30),
    heartbeat=None,
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=10,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    ),
)
