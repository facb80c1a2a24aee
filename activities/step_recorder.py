"""Turns one model step's events into UI message chunks and message parts.

Every provider's stream goes through here, so the wire format and the recorded
parts cannot drift apart: what a reader reassembles from the chunks is what the
step returns to the workflow for history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sessionflow.chunks import (
    Chunk,
    FinishChunk,
    FinishStepChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    StartChunk,
    StartStepChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolInputDeltaChunk,
    ToolInputStartChunk,
    status_chunk,
)
from sessionflow.contract import FinishReason, ModelStepResult
from sessionflow.errors import ModelUnavailable
from sessionflow.messages import (
    Part,
    ReasoningPart,
    StepStartPart,
    TextPart,
    ToolCall,
    ToolPart,
    Usage,
)
from sessionflow.providers.base import (
    ModelEvent,
    ReasoningDelta,
    ReasoningSignature,
    StepFinished,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStart,
)

_Kind = Literal["text", "reasoning"]


class StepRecorder:
    def __init__(
        self,
        emit: Callable[[Chunk], None],
        *,
        message_id: str,
        step: int,
        attempt: int,
        model: str,
    ) -> None:
        self._emit = emit
        self._message_id = message_id
        self._step = step
        self._attempt = attempt
        self._model = model
        self._parts: list[Part] = [StepStartPart()]
        self._tool_calls: list[ToolCall] = []
        self._open: tuple[_Kind, str, list[str]] | None = None
        self._finished: StepFinished | None = None
        self._signature: str | None = None
        self._count = 0

    def begin(self) -> None:
        if self._step == 0:
            self._emit(StartChunk(message_id=self._message_id))
        self._emit(StartStepChunk())

    def on(self, event: ModelEvent) -> None:
        match event:
            case TextDelta(text=text):
                self._append("text", text)
            case ReasoningDelta(text=text):
                self._append("reasoning", text)
            case ReasoningSignature(signature=signature):
                self._signature = signature
            case ToolCallStart(tool_call_id=call_id, tool_name=name):
                self._close()
                self._emit(ToolInputStartChunk(tool_call_id=call_id, tool_name=name))
            case ToolCallDelta(tool_call_id=call_id, json_delta=delta):
                self._emit(ToolInputDeltaChunk(tool_call_id=call_id, input_text_delta=delta))
            case ToolCallReady(tool_call_id=call_id, tool_name=name, input=args):
                self._close()
                self._emit(
                    ToolInputAvailableChunk(tool_call_id=call_id, tool_name=name, input=args)
                )
                self._parts.append(ToolPart(tool_call_id=call_id, tool_name=name, input=args))
                self._tool_calls.append(ToolCall(tool_call_id=call_id, tool_name=name, input=args))
            case StepFinished():
                self._finished = event

    def interrupted(self) -> ModelStepResult:
        """Close the step early, keeping what was produced; no tool call will run."""
        self._close()
        self._emit(FinishStepChunk())
        return ModelStepResult(
            parts=self._parts,
            tool_calls=self._tool_calls,
            usage=self._finished.usage if self._finished else Usage(),
            model=self._model,
            finish_reason=FinishReason.INTERRUPTED,
        )

    def end(self) -> ModelStepResult:
        """Close the step; a step without tool calls also ends the message (`finish`)."""
        if self._finished is None:
            raise ModelUnavailable("the model's stream ended before the step finished")
        self._close()
        self._emit(FinishStepChunk())
        if not self._tool_calls:
            self._emit(status_chunk("idle"))
            self._emit(FinishChunk(finish_reason=self._finished.reason.value))
        return ModelStepResult(
            parts=self._parts,
            tool_calls=self._tool_calls,
            usage=self._finished.usage,
            model=self._model,
            finish_reason=self._finished.reason,
        )

    def _append(self, kind: _Kind, text: str) -> None:
        if not text:
            return
        if self._open is None or self._open[0] != kind:
            self._close()
            self._count += 1
            part_id = f"{self._message_id}-s{self._step}a{self._attempt}p{self._count}"
            self._open = (kind, part_id, [])
            start = TextStartChunk if kind == "text" else ReasoningStartChunk
            self._emit(start(id=part_id))
        _, part_id, buffer = self._open
        buffer.append(text)
        delta = TextDeltaChunk if kind == "text" else ReasoningDeltaChunk
        self._emit(delta(id=part_id, delta=text))

    def _close(self) -> None:
        if self._open is None:
            return
        kind, part_id, buffer = self._open
        self._open = None
        end = TextEndChunk if kind == "text" else ReasoningEndChunk
        self._emit(end(id=part_id))
        text = "".join(buffer)
        if kind == "text":
            self._parts.append(TextPart(text=text))
        else:
            self._parts.append(ReasoningPart(text=text, signature=self._signature))
            self._signature = None
