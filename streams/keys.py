"""Redis key layout for a session's stream.

Every key of one session carries the workflow id as a Redis Cluster hash tag
(`{...}`), so a session's keys live on one shard and the publish script, which
touches several of them, stays a single-slot operation.

    sf:{<workflow id>}:chunks   the stream: one entry per UI message chunk
    sf:{<workflow id>}:index    hash: "latest" -> newest message id that started,
                                "sent" -> newest assistant message id a client
                                sent (written before the send is signalled),
                                <message id> -> entry id of its `start`
"""

from __future__ import annotations

from dataclasses import dataclass

# Fields of the index hash besides the message ids.
LATEST_STARTED = "latest"
LATEST_SENT = "sent"


@dataclass(frozen=True)
class StreamKeys:
    chunks: str
    index: str

    @classmethod
    def for_workflow(cls, workflow_id: str, *, prefix: str = "sf") -> StreamKeys:
        tag = "{" + workflow_id + "}"
        return cls(chunks=f"{prefix}:{tag}:chunks", index=f"{prefix}:{tag}:index")
