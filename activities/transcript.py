"""Committing a session's transcript to the transcript store, and reading it back.

The workflow hands over fragments once they add up to a few KiB (see
`SessionWorkflow.checkpoint`) and keeps only the reference it gets back; model steps
and tools read the transcript through the same store. Both run as local activities:
one payload write, no history of their own beyond the reference they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from temporalio import activity

from sessionflow.activities.failures import to_application_error
from sessionflow.contract import (
    ActivityName,
    CommitTranscriptParams,
    ForkTranscriptParams,
    RewindTranscriptParams,
    TranscriptRef,
)
from sessionflow.errors import InvalidInput, SessionflowError
from sessionflow.fragments import join_fragments
from sessionflow.messages import Message
from sessionflow.storage.transcripts import TranscriptStore


@dataclass
class TranscriptActivities:
    # None when the worker has no payload store: the workflow then keeps every message.
    store: TranscriptStore | None

    @activity.defn(name=ActivityName.COMMIT_TRANSCRIPT)
    async def commit_transcript(self, params: CommitTranscriptParams) -> TranscriptRef:
        try:
            return await _need(self.store).append(
                params.head,
                params.fragments,
                workflow_id=params.workflow_id,
                namespace=activity.info().namespace,
            )
        except SessionflowError as err:
            raise to_application_error(err) from err

    @activity.defn(name=ActivityName.REWIND_TRANSCRIPT)
    async def rewind_transcript(self, params: RewindTranscriptParams) -> TranscriptRef:
        try:
            return await _need(self.store).rewind(
                params.head,
                params.last_message_id,
                workflow_id=params.workflow_id,
                namespace=activity.info().namespace,
            )
        except SessionflowError as err:
            raise to_application_error(err) from err

    @activity.defn(name=ActivityName.FORK_TRANSCRIPT)
    async def fork_transcript(self, params: ForkTranscriptParams) -> TranscriptRef:
        """The fork's transcript (the same reference, or one cut after
        `last_message_id`), and/or the hold that keeps the session's segments for the
        fork (`params.hold`). Nothing is copied."""
        try:
            store = _need(self.store)
            ref = params.head
            if params.last_message_id is not None:
                ref = await store.cut(params.head, params.last_message_id)
            if params.hold:
                await store.hold(params.workflow_id, params.fork_workflow_id, head=ref)
            return ref
        except SessionflowError as err:
            raise to_application_error(err) from err


async def read_transcript(
    store: TranscriptStore | None, ref: TranscriptRef | None, tail: Sequence[Message]
) -> list[Message]:
    """The whole transcript an activity was handed: the committed part by reference,
    then the uncommitted fragments."""
    if ref is None:
        return join_fragments(tail)
    return await _need(store).messages(ref, tail)


def _need(store: TranscriptStore | None) -> TranscriptStore:
    if store is None:
        raise InvalidInput(
            "this worker has no payload store, so it cannot keep transcripts: connect it "
            "with external_storage=... (sessionflow.storage.external_storage_from_settings)"
        )
    return store
