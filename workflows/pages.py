"""Pages of a session's messages for the `messages` query (the Temporal UI's Queries
tab, `temporal workflow query --name messages`).

A query answer is bounded by the page, not by the session: the workflow holds only the
messages not yet committed to the transcript store (`storage.transcripts`) and a
reference to the rest. A page that lies in those is answered whole; one that reaches
into committed messages carries the reference and the uncommitted fragments instead,
and the codec server (`gateway.codec`) reads the page from the store as it decodes
the answer for the UI.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sessionflow.contract import MessagePage, PageRequest, TranscriptRef
    from sessionflow.fragments import join_fragments
    from sessionflow.messages import Message


def page(
    transcript: TranscriptRef | None, tail: list[Message], total: int, request: PageRequest
) -> MessagePage:
    offset, limit = request.offset, request.limit
    joined = join_fragments(tail)
    if transcript is None:
        return MessagePage(
            offset=offset, limit=limit, total=total, messages=joined[offset : offset + limit]
        )
    # Messages from `transcript.messages` on are whole in the tail; the tail's first
    # message may only continue the last committed one.
    whole = joined[1:] if tail and tail[0].id == transcript.last_id else joined
    start = offset - transcript.messages
    if start >= 0:
        return MessagePage(
            offset=offset, limit=limit, total=total, messages=whole[start : start + limit]
        )
    return MessagePage(
        offset=offset, limit=limit, total=total, complete=False, transcript=transcript, tail=tail
    )
