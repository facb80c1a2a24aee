"""The transcript, from the workflow's side: committed to the transcript store in
pieces, and rewound there by reference (`storage.transcripts`).

The session holds a reference to what is committed and the message fragments after
it. Once those fragments add up to `limits.commit_transcript_after_bytes` they are
committed, so no activity input, query answer or continue-as-new grows with the
conversation. A store that fails leaves everything uncommitted (tried again next
time), and a worker without a store is not asked again in that run: the session keeps
working as sessions did before the store, carrying its messages by value.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import (
        ActivityName,
        CommitTranscriptParams,
        RewindTranscriptParams,
        TranscriptRef,
    )
    from sessionflow.messages import Message
    from sessionflow.workflows import calls, policies


class Commits:
    def __init__(self) -> None:
        # Set once a worker without a payload store refused a commit.
        self._no_store = False

    async def commit(
        self, head: TranscriptRef | None, fragments: list[Message], threshold: int
    ) -> TranscriptRef | None:
        """The new head, once `fragments` are committed after `head`; None when they
        are under `threshold` bytes or the commit failed (they stay uncommitted)."""
        if self._no_store:
            return None
        size = sum(len(m.model_dump_json()) for m in fragments)
        if not fragments or size < threshold:
            return None
        try:
            ref = await calls.local(
                ActivityName.COMMIT_TRANSCRIPT,
                CommitTranscriptParams(
                    workflow_id=workflow.info().workflow_id, head=head, fragments=fragments
                ),
                policies.TRANSCRIPT,
                summary=f"commit {len(fragments)} message fragment(s), {size} bytes",
                result_type=TranscriptRef,
            )
        except ActivityError as err:
            workflow.logger.warning("could not commit the transcript (kept for later): %s", err)
            cause = err.cause
            # A worker without a payload store: do not ask again in this run.
            self._no_store = isinstance(cause, ApplicationError) and cause.non_retryable
            return None
        assert ref is not None
        return ref


def continued(reply: Message) -> Message:
    """The fragment a reply still being written continues in once its start is
    committed: the same id, nothing in it yet."""
    return Message(id=reply.id, role=reply.role, status=reply.status, metadata=reply.metadata)


async def rewound(head: TranscriptRef, last_id: str) -> TranscriptRef:
    """A rewound copy of the committed transcript that ends with `last_id` (older
    segments are shared); the store's refusal (an unknown message) is raised as is."""
    return await calls.local_or_refused(
        ActivityName.REWIND_TRANSCRIPT,
        RewindTranscriptParams(
            workflow_id=workflow.info().workflow_id, head=head, last_message_id=last_id
        ),
        policies.TRANSCRIPT,
        summary=f"rewind to {last_id}",
        result_type=TranscriptRef,
    )
