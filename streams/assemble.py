"""Rebuilding an assistant message from its stream, the way a UI does.

Applying a `data-retry` drops what the superseded attempt of that step and source
had produced, so a live reader that saw a failed attempt ends with the same message
as one that replays the stream later, and the same as the workflow's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sessionflow.chunks import (
    AbortChunk,
    DataChunk,
    ErrorChunk,
    FinishChunk,
    ReasoningDeltaChunk,
    ReasoningStartChunk,
    StartChunk,
    StartStepChunk,
    TextDeltaChunk,
    TextStartChunk,
    ToolApprovalRequestChunk,
    ToolInputAvailableChunk,
    ToolOutputAvailableChunk,
    ToolOutputDeniedChunk,
    ToolOutputErrorChunk,
)
from sessionflow.messages import (
    Message,
    MessageStatus,
    Part,
    ReasoningPart,
    Role,
    StepStartPart,
    TextPart,
    ToolApproval,
    ToolPart,
    ToolState,
)
from sessionflow.streams.reader import StreamEvent


@dataclass
class _Tracked:
    part: Part
    step: int
    source: str
    attempt: int


@dataclass
class MessageAssembler:
    """Feed it a message's events in order; `message()` is the message so far."""

    message_id: str | None = None
    status: MessageStatus = MessageStatus.STREAMING
    _parts: list[_Tracked] = field(default_factory=list)
    _by_id: dict[str, _Tracked] = field(default_factory=dict)

    def add(self, event: StreamEvent) -> None:
        chunk, where = event.chunk, (event.step, event.source, event.attempt)
        match chunk:
            case StartChunk(message_id=message_id):
                self.message_id = message_id or event.message_id
            case DataChunk(type="data-retry", data=data):
                self._drop(int(data["step"]), str(data.get("source", "model")), event.attempt)
            case StartStepChunk():
                self._append(StepStartPart(), where)
            case TextStartChunk(id=part_id):
                self._by_id[part_id] = self._append(TextPart(text=""), where)
            case ReasoningStartChunk(id=part_id):
                self._by_id[part_id] = self._append(ReasoningPart(text=""), where)
            case (
                TextDeltaChunk(id=part_id, delta=delta)
                | ReasoningDeltaChunk(id=part_id, delta=delta)
            ):
                tracked = self._by_id[part_id].part
                assert isinstance(tracked, TextPart | ReasoningPart)
                tracked.text += delta
            case ToolInputAvailableChunk(tool_call_id=call_id, tool_name=name, input=args):
                part = ToolPart(tool_call_id=call_id, tool_name=name, input=args)
                self._by_id[call_id] = self._append(part, where)
            case ToolApprovalRequestChunk(tool_call_id=call_id, approval_id=approval_id):
                tool = self._tool(call_id)
                tool.state, tool.approval = (
                    ToolState.APPROVAL_REQUESTED,
                    ToolApproval(id=approval_id),
                )
            case ToolOutputAvailableChunk(tool_call_id=call_id, output=output, preliminary=prelim):
                tool = self._answered(call_id, approved=True)
                tool.output = output
                if not prelim:
                    tool.state = ToolState.OUTPUT_AVAILABLE
            case ToolOutputErrorChunk(tool_call_id=call_id, error_text=text):
                tool = self._answered(call_id, approved=True)
                tool.state, tool.error_text = ToolState.OUTPUT_ERROR, text
            case ToolOutputDeniedChunk(tool_call_id=call_id):
                self._answered(call_id, approved=False).state = ToolState.OUTPUT_DENIED
            case FinishChunk():
                self.status = MessageStatus.COMPLETE
            case AbortChunk():
                self.status = MessageStatus.INTERRUPTED
            case ErrorChunk():
                self.status = MessageStatus.FAILED
            case _:
                pass

    def message(self) -> Message:
        return Message(
            id=self.message_id or "",
            role=Role.ASSISTANT,
            parts=[t.part for t in self._parts],
            status=self.status,
        )

    def _append(self, part: Part, where: tuple[int, str, int]) -> _Tracked:
        tracked = _Tracked(part, *where)
        self._parts.append(tracked)
        return tracked

    def _tool(self, call_id: str) -> ToolPart:
        part = self._by_id[call_id].part
        assert isinstance(part, ToolPart)
        return part

    def _answered(self, call_id: str, *, approved: bool) -> ToolPart:
        """The tool part; a requested approval is settled by what followed it (the stream
        carries no approval response: output means approved, `tool-output-denied`
        means denied, the reason only history has)."""
        tool = self._tool(call_id)
        if tool.approval is not None and tool.approval.approved is None:
            tool.approval.approved = approved
        return tool

    def _drop(self, step: int, source: str, attempt: int) -> None:
        kept = [
            t for t in self._parts if (t.step, t.source) != (step, source) or t.attempt >= attempt
        ]
        alive = {id(t) for t in kept}
        self._parts = kept
        self._by_id = {k: v for k, v in self._by_id.items() if id(v) in alive}


def assemble(events: list[StreamEvent]) -> Message:
    assembler = MessageAssembler()
    for event in events:
        assembler.add(event)
    return assembler.message()
