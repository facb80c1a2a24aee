"""The summarising step: a model call of the runtime's own that compacts a session.

The model-step activity proposes a compaction (`sessionflow.compaction.propose`); when
it is a summary, the workflow runs this activity, which asks a model (the agent's, or
`Compaction.summary_model`) to summarise the turns that no longer fit, and returns the
finished record. It streams nothing: the workflow announces the compaction itself
(`data-compaction`, start and end). Its result is recorded in workflow history, so a
replay, or a worker lost after it returned, never summarises again; a worker lost while
it runs is retried like a model step. Any provider can summarise, the scripted model
included: the transcript goes as plain text in one user message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from temporalio import activity

from sessionflow.activities.context_window import window_of
from sessionflow.activities.failures import to_application_error
from sessionflow.activities.heartbeat import heartbeating
from sessionflow.activities.session_view import load_context, load_state
from sessionflow.activities.transcript import read_transcript
from sessionflow.agents.context import AgentContext
from sessionflow.agents.registry import AgentRegistry
from sessionflow.compaction import (
    CHARS_PER_TOKEN,
    CompactionRecord,
    sent_messages,
    with_summary,
)
from sessionflow.contract import ActivityName, CompactParams
from sessionflow.errors import InvalidInput, SessionflowError
from sessionflow.messages import FilePart, Message, Role, TextPart, ToolPart, ToolState, Usage
from sessionflow.providers.base import ModelRequest, StepFinished, TextDelta
from sessionflow.providers.registry import ModelRegistry
from sessionflow.providers.scripted import Script
from sessionflow.storage.transcripts import TranscriptStore
from sessionflow.streams.context import ContextStore
from sessionflow.streams.interrupts import InterruptWatch

log = structlog.get_logger(__name__)


@dataclass
class CompactActivities:
    agents: AgentRegistry
    models: ModelRegistry
    contexts: ContextStore
    transcripts: TranscriptStore | None = None
    interrupts: InterruptWatch | None = None

    @activity.defn(name=ActivityName.COMPACT)
    async def compact(self, params: CompactParams) -> CompactionRecord:
        """Write the summary `params.proposal` asks for; return the finished record."""
        try:
            return await self._compact(params)
        except SessionflowError as err:
            raise to_application_error(err) from err

    async def _compact(self, params: CompactParams) -> CompactionRecord:
        ref, proposal = params.ref, params.proposal
        agent = self.agents.get(ref.agent)
        options = agent.compaction
        if options is None:
            raise InvalidInput(f"agent {agent.name!r} does not compact (compaction=False)")
        messages = await read_transcript(self.transcripts, params.transcript, params.messages)
        view = AgentContext(
            session_id=ref.session_id,
            messages=messages,
            context=await load_context(self.contexts, agent, ref.workflow_id, params.context_ref),
            state=load_state(agent, params.state),
        )
        chosen = options.summary_model or await agent.model_for(view)
        model_id = chosen.model_id if isinstance(chosen, Script) else chosen
        provider, model = self.models.resolve(chosen)
        window = window_of(agent, model_id) or proposal.window
        # The turns to summarise, as they were sent (cleared results stay cleared).
        current = with_summary(params.current, messages)
        done = current.summarized if current else 0
        covered = sent_messages(
            messages[: proposal.summarized],
            proposal.model_copy(update={"summarized": done, "summary": None}),
        )
        text = transcript_text(
            covered[1:] if done else covered,
            current.summary if current else None,
            max_chars=max(window // 2 - options.max_summary_tokens, 1_000) * CHARS_PER_TOKEN,
        )
        request = ModelRequest(
            model=model,
            system=options.instructions
            + f" Use at most about {options.max_summary_tokens * 3 // 4} words.",
            messages=[
                Message(
                    id=f"{ref.message_id}-compaction",
                    role=Role.USER,
                    parts=[TextPart(text=f"The conversation to summarise:\n\n{text}")],
                )
            ],
            tools=[],
            attempt=activity.info().attempt,
            purpose="compaction",
        )
        pieces: list[str] = []
        usage = Usage()
        async with heartbeating(self.interrupts, ref.workflow_id):
            async for event in provider.stream(request):
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                elif isinstance(event, StepFinished):
                    usage = event.usage
        summary = "".join(pieces).strip()
        # The summary's size replaces the room reserved for it.
        reserved = options.max_summary_tokens + 16
        after = proposal.tokens_after - reserved + len(summary) // CHARS_PER_TOKEN + 16
        log.info(
            "compacted",
            step=ref.step,
            model=model_id,
            summarized=proposal.summarized,
            tokens_before=proposal.tokens_before,
            tokens_after=after,
        )
        return proposal.model_copy(
            update={"summary": summary, "model": model_id, "usage": usage, "tokens_after": after}
        )


# -- the summariser's input -------------------------------------------------------------

_TOOL_RESULT_CHARS = 2_000
_TEXT_CHARS = 20_000


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" [... {len(text) - limit} more characters]"


def transcript_text(messages: Sequence[Message], previous: str | None, *, max_chars: int) -> str:
    """The messages to summarise as plain text (any provider takes it, with no tool
    pairing rules), long tool results clipped; the oldest text dropped past
    `max_chars`."""
    lines: list[str] = []
    if previous:
        lines.append(f"SUMMARY OF WHAT CAME BEFORE:\n{previous}\n")
    for message in messages:
        who = "USER" if message.role is Role.USER else "ASSISTANT"
        for part in message.parts:
            if isinstance(part, TextPart) and part.text:
                lines.append(f"{who}: {_clip(part.text, _TEXT_CHARS)}")
            elif isinstance(part, FilePart):
                lines.append(f"{who}: [file {part.filename or part.media_type}]")
            elif isinstance(part, ToolPart):
                lines.append(f"TOOL CALL {part.tool_name} {json.dumps(part.input)[:_TEXT_CHARS]}")
                if part.state is ToolState.OUTPUT_AVAILABLE:
                    output = (
                        part.output if isinstance(part.output, str) else json.dumps(part.output)
                    )
                    lines.append(f"TOOL RESULT: {_clip(output, _TOOL_RESULT_CHARS)}")
                elif part.error_text:
                    lines.append(f"TOOL ERROR: {_clip(part.error_text, _TOOL_RESULT_CHARS)}")
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = "[... the oldest part is omitted]\n" + text[len(text) - max_chars :]
    return text
