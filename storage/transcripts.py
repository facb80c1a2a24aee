"""The transcript store: a session's committed messages, kept beside history, not in it.

Why: if every model step and tool call carried the whole transcript as its activity
input, history would grow with the square of the conversation and a session would hit
Temporal's payload limits after a few large tool outputs. Instead the workflow holds
a reference to the transcript's newest *segment* plus the few messages not yet
committed, and activities and clients read the rest from here.

Segments are immutable payloads in the payload store (`sessionflow.storage`): the same
drivers, durability and retention as Temporal's own large payloads, content-addressed
within their session's namespace (`storage.namespaces`), so writing one twice (a
retried commit) stores it once, and deleting the session erases them. Each segment names its parent,
so a reference of constant size reaches the whole transcript; a message may be split
over several segments (a long turn is committed step by step) as *fragments* with the
same id, which reading joins again.

Decoded segments are cached per process (they never change), so a step reads only
what was committed since the previous one.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from sessionflow.contract import TranscriptRef
from sessionflow.errors import InvalidInput, MessageNotFound
from sessionflow.fragments import join_fragments
from sessionflow.messages import Message
from sessionflow.storage.namespaces import (
    NAMESPACE_CLAIM,
    SessionErasure,
    SessionHolds,
    session_context,
    session_namespace,
)

ENCODING = b"binary/sessionflow-transcript-segment"
# Decoded segments kept in memory per process, by their (uncompressed) size.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class Segment(BaseModel):
    """Fragments committed together, and where they sit in the transcript."""

    version: int = 1
    parent: TranscriptRef | None
    # Index of the message the first fragment belongs to.
    first: int
    fragments: list[Message]

    @property
    def continues(self) -> bool:
        """Whether the first fragment goes on with the parent's last message."""
        return self.parent is not None and self.fragments[0].id == self.parent.last_id


class TranscriptStore:
    """Commits and reads transcripts through the payload store's drivers.

    Writes go to the first driver; a reference is read with the driver it names, so a
    store moved to a new driver keeps reading segments written through the old one.
    """

    def __init__(
        self, drivers: Sequence[StorageDriver], *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        if not drivers:
            raise InvalidInput("the transcript store needs a payload store driver")
        self._drivers = {d.name(): d for d in drivers}
        self._writer = drivers[0]
        self._cache: OrderedDict[str, tuple[Segment, int]] = OrderedDict()
        self._cached_bytes = 0
        self._cache_limit = cache_bytes

    # -- writing --------------------------------------------------------------------

    async def append(
        self,
        head: TranscriptRef | None,
        fragments: list[Message],
        *,
        workflow_id: str | None = None,
        namespace: str = "",
    ) -> TranscriptRef:
        """Commit `fragments` after `head`, in the namespace of the session `workflow_id`
        (of none when None); the reference of the new newest segment."""
        if not fragments:
            raise ValueError("nothing to commit")
        first = 0
        if head is not None:
            first = head.messages - (1 if fragments[0].id == head.last_id else 0)
        segment = Segment(parent=head, first=first, fragments=fragments)
        return await self._write(segment, _context(workflow_id, namespace))

    async def cut(self, head: TranscriptRef, last_id: str) -> TranscriptRef:
        """A transcript that ends with message `last_id` (`MessageNotFound` if it has
        none), written nowhere: the reference of the segment that holds the message,
        with only the fragments up to it kept (`TranscriptRef.keep`). Reads the
        segments after it, writes nothing: a fork's cost does not grow with the
        transcript."""
        ref: TranscriptRef | None = head
        while ref is not None:
            segment = await self._view(ref)
            for index in range(len(segment.fragments) - 1, -1, -1):
                if segment.fragments[index].id == last_id:
                    kept = segment.fragments[: index + 1]
                    return ref.model_copy(
                        update={
                            "keep": index + 1,
                            "messages": segment.first + len(join_fragments(kept)),
                            "last_id": last_id,
                        }
                    )
            ref = segment.parent
        raise MessageNotFound(f"no message {last_id!r} in this session")

    async def hold(
        self, workflow_id: str, fork_workflow_id: str, *, head: TranscriptRef | None = None
    ) -> None:
        """Keep the session's segments (and those it refers to in other sessions')
        for the fork `fork_workflow_id` until the fork is erased (`storage.namespaces`);
        `SessionNotFound` if the fork's `head` segment is gone (the session was deleted
        first). Drivers that never delete need no hold."""
        for name, driver in self._drivers.items():
            if isinstance(driver, SessionHolds):
                keep = [] if head is None or head.driver != name else [head.claim]
                await driver.hold(
                    workflow_id,
                    fork_workflow_id,
                    keep=[StorageDriverClaim(claim_data=claim) for claim in keep],
                )

    async def rewind(
        self,
        head: TranscriptRef,
        last_id: str,
        *,
        workflow_id: str | None = None,
        namespace: str = "",
    ) -> TranscriptRef:
        """A transcript that ends with message `last_id` (`MessageNotFound` if it has
        none); nothing is deleted, the new head shares every older segment."""
        ref: TranscriptRef | None = head
        while ref is not None:
            segment = await self._view(ref)
            for index in range(len(segment.fragments) - 1, -1, -1):
                if segment.fragments[index].id == last_id:
                    kept = segment.fragments[: index + 1]
                    rewound = segment.model_copy(update={"fragments": kept})
                    return await self._write(rewound, _context(workflow_id, namespace))
            ref = segment.parent
        raise MessageNotFound(f"no message {last_id!r} in this session")

    async def _write(self, segment: Segment, context: StorageDriverStoreContext) -> TranscriptRef:
        raw = segment.model_dump_json().encode()
        payload = Payload(metadata={"encoding": ENCODING}, data=zlib.compress(raw, 1))
        claims = await self._writer.store(context, [payload])
        ref = TranscriptRef(
            driver=self._writer.name(),
            claim=dict(claims[0].claim_data),
            messages=segment.first + len(join_fragments(segment.fragments)),
            last_id=segment.fragments[-1].id,
        )
        self._remember(ref, segment, len(raw))
        return ref

    # -- erasing --------------------------------------------------------------------

    async def erase_session(self, workflow_id: str) -> list[str]:
        """Delete the session's namespace in every driver (its segments and its other
        payloads); the names of the drivers that kept them: where other sessions hold
        it (it is only marked erased, `storage.namespaces`), and drivers that keep no
        namespaces (a bucket lifecycle rule, or nothing, removes what they stored)."""
        self._forget(workflow_id)
        kept = []
        for name, driver in self._drivers.items():
            if not isinstance(driver, SessionErasure) or not await driver.erase_session(
                workflow_id
            ):
                kept.append(name)
        return kept

    def _forget(self, workflow_id: str) -> None:
        """Drop cached segments of the session (they could be read after an erase)."""
        namespace = session_namespace(workflow_id)
        for key in [k for k in self._cache if f"{NAMESPACE_CLAIM}={namespace}" in k]:
            _, size = self._cache.pop(key)
            self._cached_bytes -= size

    # -- reading --------------------------------------------------------------------

    async def messages(
        self,
        head: TranscriptRef | None,
        tail: Sequence[Message] = (),
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages `offset` to `offset + limit` of the transcript `head` followed by the
        uncommitted `tail`; only the segments that page needs are read."""
        segments: list[Segment] = []
        ref = head
        while ref is not None:
            segment = await self._view(ref)
            segments.append(segment)
            # Stop once message `offset` is whole: not continued from an older segment.
            if segment.first < offset or (segment.first == offset and not segment.continues):
                break
            ref = segment.parent
        start = segments[-1].first if segments else 0
        fragments = [f for s in reversed(segments) for f in s.fragments]
        joined = join_fragments([*fragments, *tail])
        skip = offset - start
        end = None if limit is None else skip + limit
        return joined[skip:end] if skip >= 0 else joined[:end]

    async def _view(self, ref: TranscriptRef) -> Segment:
        """The segment as `ref` sees it: cut to its first `keep` fragments if set."""
        segment = await self._read(ref)
        if ref.keep is None or ref.keep >= len(segment.fragments):
            return segment
        return segment.model_copy(update={"fragments": segment.fragments[: ref.keep]})

    async def _read(self, ref: TranscriptRef) -> Segment:
        key = ref.key()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached[0]
        driver = self._drivers.get(ref.driver)
        if driver is None:
            raise InvalidInput(
                f"this transcript is in payload store driver {ref.driver!r}, which this "
                f"process does not have (it has {', '.join(sorted(self._drivers))}): every "
                "worker and client must use the same SESSIONFLOW_PAYLOAD_STORE"
            )
        [payload] = await driver.retrieve(
            StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=ref.claim)]
        )
        if payload.metadata.get("encoding") != ENCODING:
            raise ValueError(f"{key} is not a transcript segment")
        raw = zlib.decompress(payload.data)
        segment = Segment.model_validate_json(raw)
        self._remember(ref, segment, len(raw))
        return segment

    def _remember(self, ref: TranscriptRef, segment: Segment, size: int) -> None:
        key = ref.key()
        if key in self._cache or size > self._cache_limit:
            return
        self._cache[key] = (segment, size)
        self._cached_bytes += size
        while self._cached_bytes > self._cache_limit:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._cached_bytes -= dropped


def _context(workflow_id: str | None, namespace: str) -> StorageDriverStoreContext:
    if workflow_id is None:
        return StorageDriverStoreContext()
    return session_context(workflow_id, namespace)
