"""A tool call's progress, streamed within its byte budget, then summarised.

`ToolContext.stream_output` lands here. Each preliminary output is measured as Redis
will store it (the chunk's JSON and the entry's fields) and written only while the
call's share of the turn's budget (`sessionflow.streams.budget`) has room for it.
The first one that does not fit stops the streaming for the rest of the call, and a
transient `data-tool-progress` chunk says so; when the call ends, another says how
many updates, and bytes, were not streamed. Both are small and written once, so a
call writes at most its share plus two short chunks, whatever the tool does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_core import to_jsonable_python

from sessionflow.chunks import Chunk, DataChunk, ToolOutputAvailableChunk
from sessionflow.streams.writer import StepStream

PROGRESS_CHUNK_TYPE = "data-tool-progress"


def entry_overhead(where: StepStream) -> int:
    """Bytes a stream entry holds besides its chunk: the fields the publish script adds."""
    fields = {
        "chunk": "",
        "msg": where.message_id,
        "step": str(where.step),
        "attempt": str(where.attempt),
        "src": where.source,
    }
    return sum(len(name) + len(value.encode()) for name, value in fields.items())


class ProgressStream:
    """Streams one tool call's preliminary outputs until `granted` bytes are used."""

    def __init__(
        self,
        emit: Callable[[Chunk], None],
        *,
        tool_call_id: str,
        where: StepStream,
        granted: int,
        per_call: int,
    ) -> None:
        self._emit = emit
        self._call_id = tool_call_id
        self._overhead = entry_overhead(where)
        self.granted = granted
        # Whether running out is the call's own budget or the turn's.
        self._limit = "call" if granted >= per_call else "turn"
        self.used = 0
        self.withheld_updates = 0
        self.withheld_bytes = 0
        # The newest output so far, streamed or not: what an interrupted call keeps.
        self.latest: Any = None

    @property
    def unused(self) -> int:
        return max(self.granted - self.used, 0)

    def output(self, value: Any) -> None:
        """Stream `value` as the call's output so far, if the budget has room."""
        self.latest = to_jsonable_python(value)
        chunk = ToolOutputAvailableChunk(
            tool_call_id=self._call_id, output=self.latest, preliminary=True
        )
        size = len(chunk.to_json().encode()) + self._overhead
        if self.withheld_updates == 0 and self.used + size <= self.granted:
            self.used += size
            self._emit(chunk)
            return
        if self.withheld_updates == 0:
            self._emit(self._notice(final=False))
        self.withheld_updates += 1
        self.withheld_bytes += size

    def close(self) -> None:
        """Summarise what was not streamed, if anything was held back."""
        if self.withheld_updates:
            self._emit(self._notice(final=True))

    def _notice(self, *, final: bool) -> DataChunk:
        budget = self.granted if self._limit == "call" else None
        why = (
            f"this call's {budget // 1024} KiB of streamed progress is used"
            if budget is not None
            else "this turn's streamed progress is used"
        )
        data: dict[str, Any] = {
            "toolCallId": self._call_id,
            "streaming": "summary" if final else "stopped",
            "limit": self._limit,
            "streamedBytes": self.used,
        }
        if final:
            data["notStreamedUpdates"] = self.withheld_updates
            data["notStreamedBytes"] = self.withheld_bytes
            data["text"] = (
                f"{self.withheld_bytes:,} bytes of further output not streamed "
                f"({self.withheld_updates:,} updates): {why}; the result follows"
            )
        else:
            data["text"] = f"progress no longer streamed: {why}; the result follows at the end"
        return DataChunk(type=PROGRESS_CHUNK_TYPE, data=data, transient=True)
