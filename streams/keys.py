"""Redis key layout for a session.

Every key of one session starts with `sf:{<workflow id>}`: the braces make the
workflow id a Redis Cluster hash tag, so all of a session's keys hash to one slot
(one shard) and the scripts and transactions that touch several of them (the
publish script: stream, index and write marks) stay single-slot operations. The
workflow id therefore must not be empty or hold a brace, or the tag would differ
(or vanish) between keys; session ids refuse braces for this reason
(`sessionflow.ids`).

    sf:{<workflow id>}:chunks   the stream: one entry per UI message chunk
    sf:{<workflow id>}:index    hash: "latest" -> newest message id that started,
                                "sent" -> newest assistant message id a client
                                sent (written before the send is signalled),
                                <message id> -> entry id of its `start`,
                                "interrupts" -> how many interrupts were signalled
                                (`streams.interrupts`),
                                "run-end" -> "<run id> <entry id>" of the `error`
                                that ended a run closed mid-answer
                                (`streams.ended_runs`)
    sf:{<workflow id>}:writes   hash: writer token -> how many of its chunks are in
                                the stream, so a retried write adds only the rest
    sf:{<workflow id>}:ctx:<ref>            a turn's context (`streams.context`)
    sf:{<workflow id>}:exec:<call id>:<n>   a tool call's finished command results
                                            (`activities.recorded_sandbox`)
    sf:{<workflow id>}:progress:<message id>  bytes of progress the turn's tool calls
                                            reserved to stream (`streams.budget`)
"""

from __future__ import annotations

from dataclasses import dataclass

from sessionflow.errors import InvalidInput

# Fields of the index hash besides the message ids.
LATEST_STARTED = "latest"
LATEST_SENT = "sent"
INTERRUPTS = "interrupts"
RUN_END = "run-end"
# The index hash's lifetime when a client writes to it (a sent message's id, an
# interrupt notice) before any stream exists; the publisher then sets it with the
# stream's.
CLIENT_WRITE_TTL_SECONDS = 7 * 24 * 3600


def session_prefix(workflow_id: str, *, prefix: str = "sf") -> str:
    """`<prefix>:{<workflow id>}`, the start of every key of the session."""
    if not workflow_id or "{" in workflow_id or "}" in workflow_id:
        raise InvalidInput(
            f"workflow id {workflow_id!r} cannot be a Redis Cluster hash tag: it must be "
            "non-empty and hold no braces"
        )
    if "{" in prefix or "}" in prefix:
        raise InvalidInput(f"key prefix {prefix!r} must hold no braces")
    return f"{prefix}:{{{workflow_id}}}"


@dataclass(frozen=True)
class StreamKeys:
    chunks: str
    index: str
    writes: str

    @classmethod
    def for_workflow(cls, workflow_id: str, *, prefix: str = "sf") -> StreamKeys:
        base = session_prefix(workflow_id, prefix=prefix)
        return cls(chunks=f"{base}:chunks", index=f"{base}:index", writes=f"{base}:writes")
