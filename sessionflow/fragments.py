"""Messages split into fragments, and joined again.

A long turn's answer is committed to the transcript store step by step (see
`sessionflow.storage.transcripts`), so one message may arrive as several fragments in
a row with the same id: each carries the parts of some steps, and the last one says
how the message ended (status, metadata).
"""

from __future__ import annotations

from collections.abc import Iterable

from sessionflow.messages import Message


def join_fragments(fragments: Iterable[Message]) -> list[Message]:
    """Whole messages from fragments in order; the inputs are never modified (stores
    cache them), so a joined message is a new object."""
    joined: list[Message] = []
    for fragment in fragments:
        if joined and joined[-1].id == fragment.id:
            last = joined[-1]
            joined[-1] = last.model_copy(
                update={
                    "parts": [*last.parts, *fragment.parts],
                    "status": fragment.status,
                    "metadata": fragment.metadata,
                }
            )
        else:
            joined.append(fragment)
    return joined


def count_messages(fragments: Iterable[Message], after_id: str | None = None) -> int:
    """How many messages `fragments` hold; a first fragment continuing message
    `after_id` (the end of what came before) is not a new one."""
    count = 0
    previous = after_id
    for fragment in fragments:
        if fragment.id != previous:
            count += 1
        previous = fragment.id
    return count
