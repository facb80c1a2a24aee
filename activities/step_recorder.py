"""Turns one model step's events into UI message chunks and message parts.

Every provider's stream goes through here, so the wire format and the recorded
parts cannot drift apart: what a reader reassembles from the chunks is what the
step returns to the workflow for history.

It also names every tool call. A provider's call id is the model's to choose, and a
hostile model repeats one (`List` and `Bash` both as `dup-1`) so that an approval or
a recorded command meant for one call lands on the other. The runtime never keys
anything by it: each call gets `runtime_call_id(message, step, n)`, unique in the
session (assistant message ids are, and each step numbers its calls), stable across
attempts of the step, and made of the characters every provider accepts. Requests
carry the whole conversation with these ids, so the provider's own is never needed
again.
"""

from __future__ import annotations

import hashlib
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
from sessionflow.json_limits import MAX_TOOL_INPUT_BYTES, json_problem
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


def runtime_call_id(message_id: str, step: int, n: int) -> str:
    """The id of the `n`-th tool call of a step; see the module docstring."""
    digest = hashlib.blake2b(f"{message_id}\x00{step}\x00{n}".encode(), digest_size=12)
    return f"call_{digest.hexdigest()}"


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
        # Provider call id -> runtime id of the call started under it, until it is ready.
        self._calls_open: dict[str, str] = {}
        self._calls_named = 0
        # Aligned with the tool calls: why a call's input was unusable, or None.
        self.input_problems: list[str | None] = []

    def begin(self, *, started: bool = False) -> None:
        """Open the step; the answer's first step opens the message too, unless the
        workflow already did (`started`)."""
        if self._step == 0 and not started:
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
            case ToolCallStart(tool_call_id=given, tool_name=name):
                self._close()
                call_id = self._calls_open[given] = self._new_call_id()
                self._emit(ToolInputStartChunk(tool_call_id=call_id, tool_name=name))
            case ToolCallDelta(tool_call_id=given, json_delta=delta):
                call_id = self._calls_open.get(given) or self._open_call(given)
                self._emit(ToolInputDeltaChunk(tool_call_id=call_id, input_text_delta=delta))
            case ToolCallReady(tool_call_id=given, tool_name=name, input=args):
                self._close()
                opened = self._calls_open.pop(given, "")
                call_id = opened or self._new_call_id()
                # An input the workflow could not decode (or record) must not reach it:
                # the call keeps an empty input and is refused, naming the limit.
                problem = json_problem(args, "the tool input", max_bytes=MAX_TOOL_INPUT_BYTES)
                if problem is not None:
                    args = {}
                self.input_problems.append(problem)
                self._emit(
                    ToolInputAvailableChunk(tool_call_id=call_id, tool_name=name, input=args)
                )
                self._parts.append(ToolPart(tool_call_id=call_id, tool_name=name, input=args))
                self._tool_calls.append(ToolCall(tool_call_id=call_id, tool_name=name, input=args))
            case StepFinished():
                self._finished = event

    def _new_call_id(self) -> str:
        """The next call's runtime id; a provider's repeated id still gets a new one."""
        self._calls_named += 1
        return runtime_call_id(self._message_id, self._step, self._calls_named)

    def _open_call(self, given: str) -> str:
        call_id = self._calls_open[given] = self._new_call_id()
        return call_id

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
        """Close the step. A step without tool calls also ends the message, but only
        once its result is known to be recordable: see `finish_message`."""
        if self._finished is None:
            raise ModelUnavailable("the model's stream ended before the step finished")
        self._close()
        self._emit(FinishStepChunk())
        return ModelStepResult(
            parts=self._parts,
            tool_calls=self._tool_calls,
            usage=self._finished.usage,
            model=self._model,
            finish_reason=self._finished.reason,
        )

    def finish_message(self, result: ModelStepResult) -> None:
        """`finish` for a step that ends the answer. Emitted last, after every check
        that could still fail the step: a reader stops at `finish`, so an error after
        it would make a failed turn look successful."""
        if not result.tool_calls:
            self._emit(status_chunk("idle"))
            self._emit(FinishChunk(finish_reason=result.finish_reason.value))

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
