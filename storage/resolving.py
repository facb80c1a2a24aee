"""Payloads as an operator should see them: references resolved to what they point at.

History holds two kinds of reference that the Temporal UI shows as opaque claims (a
driver name and a sha256), so that ops could not read a long conversation:

- a payload of at least `SESSIONFLOW_PAYLOAD_THRESHOLD` bytes, stored by the SDK's
  `ExternalStorage` (`storage/__init__.py`): fetched and put in the reference's place;
- a transcript reference (`TranscriptRef`, a `"transcript"` field of a model step's or
  tool call's input, a continue-as-new snapshot, the `transcript` and `messages`
  queries' answers): the committed messages are read from the transcript store and
  set beside it, as `"transcript_messages"` (the newest `inline_messages` of them,
  and `"transcript_messages_omitted"` for how many older ones were left out: page
  through them with the `messages` query), and a `messages` query page that reached
  into committed messages is filled in.

This is what the codec server (`gateway.codec`) runs for every payload the UI asks it to
decode. It only reads; nothing is decoded twice in a way that changes what a worker sees.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import structlog
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.converter import ExternalStorage

from sessionflow.contract import MessagePage, TranscriptRef
from sessionflow.storage.transcripts import TranscriptStore

log = structlog.get_logger(__name__)

JSON_ENCODING = b"json/plain"
# Committed messages set beside a transcript reference, at most (the newest ones).
DEFAULT_INLINE_MESSAGES = 100
_REF_FIELDS = frozenset(TranscriptRef.model_fields)


class PayloadResolver:
    """Resolves external payload references and transcript references in payloads."""

    def __init__(
        self,
        storage: ExternalStorage,
        *,
        inline_messages: int = DEFAULT_INLINE_MESSAGES,
    ) -> None:
        self._storage = storage
        self._transcripts = TranscriptStore(storage.drivers)
        self._inline = inline_messages

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload with its references resolved; a payload that cannot be resolved
        (its object gone, a driver this process does not have) is returned as it came,
        and the failure logged: the UI still shows the rest."""
        decoded = []
        for payload in payloads:
            try:
                decoded.append(await self._decode_one(payload))
            except Exception as err:  # one bad payload must not hide the others
                log.warning("could not resolve a payload", error=str(err))
                decoded.append(payload)
        return decoded

    async def _decode_one(self, payload: Payload) -> Payload:
        # The SDK's own retrieval (it knows its reference formats); a payload that is no
        # reference comes back unchanged.
        [payload] = await self._storage._retrieve_payload_sequence([payload])
        if payload.metadata.get("encoding") != JSON_ENCODING:
            return payload
        try:
            value = json.loads(payload.data)
        except ValueError:
            return payload
        if not await self._resolve(value):
            return payload
        resolved = Payload()
        resolved.CopyFrom(payload)
        resolved.data = json.dumps(value, ensure_ascii=False).encode()
        return resolved

    async def _resolve(self, value: Any) -> bool:
        """Resolve every transcript reference in `value` in place; True if any was."""
        changed = False
        if isinstance(value, list):
            for item in value:
                changed = await self._resolve(item) or changed
            return changed
        if not isinstance(value, dict):
            return False
        if await self._fill_page(value):
            return True
        ref = _transcript_ref(value.get("transcript"))
        if ref is not None:
            messages = await self._transcripts.messages(
                ref, offset=max(ref.messages - self._inline, 0)
            )
            value["transcript_messages"] = [m.model_dump(mode="json") for m in messages]
            value["transcript_messages_omitted"] = max(ref.messages - self._inline, 0)
            changed = True
        for key, item in value.items():
            if key not in ("transcript", "transcript_messages"):
                changed = await self._resolve(item) or changed
        return changed

    async def _fill_page(self, value: dict[str, Any]) -> bool:
        """A `messages` query page that the workflow could not fill, filled."""
        if value.get("complete") is not False or "offset" not in value:
            return False
        try:
            page = MessagePage.model_validate(value)
        except ValidationError:
            return False
        if page.transcript is None:
            return False
        messages = await self._transcripts.messages(
            page.transcript, page.tail, offset=page.offset, limit=page.limit
        )
        filled = page.model_copy(
            update={"messages": messages, "complete": True, "transcript": None, "tail": []}
        )
        value.clear()
        value.update(filled.model_dump(mode="json"))
        return True


def _transcript_ref(value: Any) -> TranscriptRef | None:
    if not isinstance(value, dict) or not value.keys() >= _REF_FIELDS:
        return None
    try:
        return TranscriptRef.model_validate(value)
    except ValidationError:
        return None
