"""The model-step activity: one call to the agent's model, streamed to Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError
from temporalio import activity

from sessionflow.activities import metrics, spans
from sessionflow.activities.context_window import fit_to_window
from sessionflow.activities.failures import to_application_error
from sessionflow.activities.heartbeat import heartbeating
from sessionflow.activities.limits import capped_text, ensure_recordable, state_size_problem
from sessionflow.activities.session_view import dump_state, interrupted, load_context, load_state
from sessionflow.activities.spending import budget_reached, priced
from sessionflow.activities.step_recorder import StepRecorder
from sessionflow.activities.transcript import read_transcript
from sessionflow.agents.context import AgentContext, resolve
from sessionflow.agents.definition import Agent
from sessionflow.agents.registry import AgentRegistry
from sessionflow.chunks import status_chunk
from sessionflow.compaction import CompactionRecord
from sessionflow.contract import ActivityName, FinishReason, ModelStepParams, ModelStepResult
from sessionflow.errors import PayloadTooLarge, SessionflowError
from sessionflow.messages import ToolCall, Usage
from sessionflow.prices import PriceTable
from sessionflow.providers.base import ModelRequest, ToolSpec
from sessionflow.providers.registry import ModelRegistry
from sessionflow.providers.scripted import Script
from sessionflow.storage.transcripts import TranscriptStore
from sessionflow.streams.context import ContextStore
from sessionflow.streams.interrupts import InterruptWatch
from sessionflow.streams.publisher import StepStream, StreamPublisher

log = structlog.get_logger(__name__)


@dataclass
class ModelStepActivities:
    agents: AgentRegistry
    models: ModelRegistry
    publisher: StreamPublisher
    contexts: ContextStore
    transcripts: TranscriptStore | None = None
    # Interrupt notices through Redis: steps heartbeat slowly between interrupts.
    interrupts: InterruptWatch | None = None
    # The deployment's prices (built in, then SESSIONFLOW_PRICES); agents add theirs.
    prices: PriceTable = field(default_factory=PriceTable)

    @activity.defn(name=ActivityName.MODEL_STEP)
    async def model_step(self, params: ModelStepParams) -> ModelStepResult:
        """Stream one model step to the session's stream and return what it produced.

        Chunks of every attempt are tagged with the attempt number, and a retry is
        announced (see `StreamPublisher.writer`). An interrupt ends the step early and returns what
        was produced so far, so the partial answer is kept in history.
        """
        with spans.model_step(params.ref) as span:
            try:
                result = await self._step(params)
            except SessionflowError as err:
                raise to_application_error(err) from err
            spans.record_step(span, result)
            return result

    async def _step(self, params: ModelStepParams) -> ModelStepResult:
        ref = params.ref
        attempt = activity.info().attempt
        agent = self.agents.get(ref.agent)
        fresh_state = params.state is None and agent.state_schema is not None
        messages = await read_transcript(self.transcripts, params.transcript, params.messages)
        view = AgentContext(
            session_id=ref.session_id,
            messages=messages,
            context=await load_context(self.contexts, agent, ref.workflow_id, params.context_ref),
            state=load_state(agent, params.state),
        )
        chosen = await agent.model_for(view)
        model_id = chosen.model_id if isinstance(chosen, Script) else chosen
        provider, model = self.models.resolve(chosen)
        prices = self.prices.with_overrides(agent.prices)
        stop = budget_reached(agent, params, model_id, prices)
        if stop is not None:
            # Not called: the workflow ends the turn and says so in the stream.
            log.info("model step not taken: budget reached", step=ref.step, budget=stop.kind)
            return ModelStepResult(
                parts=[],
                tool_calls=[],
                usage=Usage(),
                model=model_id,
                finish_reason=FinishReason.LENGTH,
                budget_reached=stop,
            )
        tools = await agent.tools_for(view)
        request = ModelRequest(
            model=model,
            system=await resolve(agent.system, view, option="system"),
            messages=messages,
            tools=[
                ToolSpec(name=t.name, description=t.description, input_schema=t.json_schema())
                for t in tools
            ],
            attempt=attempt,
            max_output_tokens=agent.max_output_tokens,
        )
        fits = fit_to_window(agent, model_id, request, params.compaction)
        if isinstance(fits, CompactionRecord):
            log.info("compaction needed", step=ref.step, model=model_id, stage=fits.stage)
            return ModelStepResult(
                parts=[],
                tool_calls=[],
                usage=Usage(),
                model=model_id,
                finish_reason=FinishReason.OTHER,
                model_activity=agent.model_activity,
                compact=fits,
            )
        request.messages = fits
        where = StepStream(ref.workflow_id, ref.message_id, ref.step, attempt)
        async with (
            heartbeating(self.interrupts, ref.workflow_id),
            self.publisher.writer(where) as writer,
        ):
            recorder = StepRecorder(
                writer.emit,
                message_id=ref.message_id,
                step=ref.step,
                attempt=attempt,
                model=model_id,
            )
            recorder.begin(started=params.started)
            writer.emit(status_chunk("thinking"))
            try:
                async for event in provider.stream(request):
                    recorder.on(event)
            except asyncio.CancelledError:
                if not interrupted():
                    raise
                log.info("model step interrupted", step=ref.step, model=model_id)
                cut = recorder.interrupted()
                cut.usage = priced(cut.usage, model_id, prices)
                return cut
            result = recorder.end()
            result.usage = priced(result.usage, model_id, prices)
            await _settle(result, agent, recorder, [t.name for t in tools])
            if fresh_state:
                result.state = dump_state(view.state)
                problem = state_size_problem(result.state)
                if problem is not None:
                    raise PayloadTooLarge(f"agent {agent.name!r}'s initial state: {problem}")
            ensure_recordable(result, f"model step {ref.step + 1} ({model_id})")
            # Only now may the stream say the answer is finished.
            recorder.finish_message(result)
        log.info(
            "model step finished",
            step=ref.step,
            model=model_id,
            finish_reason=result.finish_reason.value,
            tool_calls=len(result.tool_calls),
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost=result.usage.cost,
        )
        metrics.model_step(model_id, result)
        return result


async def _settle(
    result: ModelStepResult, agent: Agent, recorder: StepRecorder, offered: list[str]
) -> None:
    """What the workflow needs to run the step's calls: which are refused, which
    need approval, which work in the sandbox, and each one's activity settings."""
    decided = [
        (False, problem) if problem else await _decide(agent, call, offered)
        for call, problem in zip(result.tool_calls, recorder.input_problems, strict=True)
    ]
    result.needs_approval = [needs for needs, _ in decided]
    result.refused = [refused for _, refused in decided]
    tools = [agent.tool(c.tool_name) for c in result.tool_calls]
    result.tool_activity = [agent.activity_for(t) for t in tools]
    result.uses_sandbox = [t is not None and t.sandbox for t in tools]
    result.model_activity = agent.model_activity
    result.webhook_url = agent.webhook_url


async def _decide(agent: Agent, call: ToolCall, offered: list[str]) -> tuple[bool, str | None]:
    """Whether a call needs approval, and why it must not run at all (or None).

    Only tools offered to the model in this step run: a model that names another (an
    inactive built-in, one it saw in an earlier step, one it made up) is told so, and
    the call neither runs nor asks for approval. An approval rule that raises fails
    closed: the call is refused, once, rather than the whole paid step being retried
    as if the failure were transient."""
    if call.tool_name not in offered:
        available = ", ".join(offered) or "none"
        why = f"tool {call.tool_name!r} is not available in this step (available: {available})"
        return False, why
    try:
        return await _needs_approval(agent, call), None
    except Exception as err:
        why = f"{type(err).__name__}: {err}"
        return False, capped_text(f"{call.tool_name} was not run: its approval rule failed ({why})")


async def _needs_approval(agent: Agent, call: ToolCall) -> bool:
    tool = agent.tool(call.tool_name)
    if tool is None:
        return False
    try:
        args: Any = tool.input_schema.model_validate(call.input)
    except ValidationError:
        return False  # the tool run reports the invalid input to the model
    return await agent.requires_approval(tool, args)
