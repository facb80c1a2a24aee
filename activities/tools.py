"""The tool activity: runs one tool call, user code included, in the session's sandbox.

Mistakes the model can correct (an unknown tool, arguments that fail the schema, a
tool that raises) come back as a tool error for the model to read, not as an
activity failure. Only infrastructure trouble (a retryable `SessionflowError`) is
raised for Temporal to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from temporalio import activity

from sessionflow.activities import metrics, spans
from sessionflow.activities.call_starts import first_start, idempotency_key
from sessionflow.activities.failures import to_application_error
from sessionflow.activities.heartbeat import heartbeating
from sessionflow.activities.limits import capped_text, ensure_recordable, state_size_problem
from sessionflow.activities.progress import ProgressStream
from sessionflow.activities.recorded_sandbox import RecordedSandbox
from sessionflow.activities.session_view import dump_state, interrupted, load_context, load_state
from sessionflow.activities.transcript import read_transcript
from sessionflow.agents.registry import AgentRegistry
from sessionflow.agents.tools import NoSandbox, ToolContext
from sessionflow.chunks import Chunk, ToolOutputAvailableChunk, ToolOutputErrorChunk, status_chunk
from sessionflow.contract import (
    INTERRUPTED_TEXT,
    OUTCOME_UNKNOWN_TEXT,
    ActivityName,
    RunToolParams,
    RunToolResult,
)
from sessionflow.errors import SandboxNotFound, SessionflowError
from sessionflow.ids import sandbox_owner
from sessionflow.sandbox.base import SandboxBackend
from sessionflow.storage.transcripts import TranscriptStore
from sessionflow.streams.budget import BudgetLedger, StreamBudget
from sessionflow.streams.context import ContextStore
from sessionflow.streams.interrupts import InterruptWatch
from sessionflow.streams.publisher import StepStream, StreamPublisher

log = structlog.get_logger(__name__)

# Tool output kept in history and sent to the model; larger output is cut with a marker.
MAX_OUTPUT_BYTES = 256 * 1024
# On interrupt a tool sees `ctx.cancelled` and gets this long to stop by itself (and
# clean up) before its task is cancelled, which kills its sandbox commands.
STOP_GRACE_SECONDS = 0.5


@dataclass
class ToolActivities:
    agents: AgentRegistry
    sandboxes: SandboxBackend
    publisher: StreamPublisher
    contexts: ContextStore
    transcripts: TranscriptStore | None = None
    max_output_bytes: int = MAX_OUTPUT_BYTES
    # Interrupt notices through Redis: calls heartbeat slowly between interrupts.
    interrupts: InterruptWatch | None = None
    # Bytes of progress a call, and a turn, may stream (`sessionflow.streams.budget`).
    stream_budget: StreamBudget = field(default_factory=StreamBudget)

    def __post_init__(self) -> None:
        self._ledger = BudgetLedger(
            self.publisher.redis,
            self.stream_budget,
            prefix=self.publisher.prefix,
            ttl_seconds=self.publisher.retention.ttl_seconds,
        )

    @activity.defn(name=ActivityName.RUN_TOOL)
    async def run_tool(self, params: RunToolParams) -> RunToolResult:
        ref = params.ref
        where = StepStream(
            ref.workflow_id,
            ref.message_id,
            ref.step,
            activity.info().attempt,
            source=f"tool:{params.call.tool_call_id}",
        )
        started = time.monotonic()
        with spans.tool_call(ref, params.call) as span:
            result = await self._run_tool(params, where, started)
            spans.record_tool(span, result)
            return result

    async def _run_tool(
        self, params: RunToolParams, where: StepStream, started: float
    ) -> RunToolResult:
        ref = params.ref
        async with (
            heartbeating(self.interrupts, ref.workflow_id),
            self.publisher.writer(where) as writer,
            self._progress(where, params.call.tool_call_id, writer.emit) as progress,
        ):
            writer.emit(status_chunk("running-tool", tool=params.call.tool_name))
            try:
                result = await self._execute(params, progress)
            except SessionflowError as err:
                # A vanished sandbox is the workflow's to handle (it makes a new one).
                if err.retryable or isinstance(err, SandboxNotFound):
                    raise to_application_error(err) from err
                result = RunToolResult(error_text=capped_text(f"{err.error_type}: {err}"))
            except asyncio.CancelledError:
                if not interrupted():
                    raise
                result = RunToolResult(
                    error_text=_interrupted_text(progress.latest), interrupted=True
                )
            call_id = params.call.tool_call_id
            elapsed = time.monotonic() - started
            log.info(
                "tool finished",
                tool=params.call.tool_name,
                tool_call_id=call_id,
                failed=result.error_text is not None,
                duration_ms=int(elapsed * 1000),
            )
            metrics.tool_run(params.call.tool_name, elapsed, failed=result.error_text is not None)
            progress.close()
            if result.error_text is not None:
                writer.emit(
                    ToolOutputErrorChunk(tool_call_id=call_id, error_text=result.error_text)
                )
            else:
                writer.emit(ToolOutputAvailableChunk(tool_call_id=call_id, output=result.output))
            return result

    @contextlib.asynccontextmanager
    async def _progress(
        self, where: StepStream, tool_call_id: str, emit: Callable[[Chunk], None]
    ) -> AsyncIterator[ProgressStream]:
        """The call's progress stream, with its share of the turn's budget reserved, and
        what it did not use given back when it ends."""
        granted = await self._ledger.reserve(where.workflow_id, where.message_id)
        progress = ProgressStream(
            emit,
            tool_call_id=tool_call_id,
            where=where,
            granted=granted,
            per_call=self.stream_budget.per_call_bytes,
        )
        try:
            yield progress
        finally:
            await self._ledger.release(where.workflow_id, where.message_id, progress.unused)

    async def _execute(self, params: RunToolParams, progress: ProgressStream) -> RunToolResult:
        call = params.call
        agent = self.agents.get(params.ref.agent)
        found = agent.tool(call.tool_name)
        if found is None:
            names = ", ".join(t.name for t in agent.tools) or "none"
            return RunToolResult(error_text=f"unknown tool {call.tool_name!r} (tools: {names})")
        try:
            args = found.input_schema.model_validate(call.input)
        except ValidationError as err:
            return RunToolResult(
                error_text=capped_text(f"invalid input for {call.tool_name}: {err}")
            )
        if found.sandbox and params.sandbox_id is None:
            raise SessionflowError("tool called before the session had a sandbox")
        workflow_id = params.ref.workflow_id
        if not found.retryable and not await first_start(
            self.publisher.redis, workflow_id, call.tool_call_id, prefix=self.publisher.prefix
        ):
            log.warning("not running a tool call again", tool=call.tool_name)
            return RunToolResult(error_text=OUTCOME_UNKNOWN_TEXT)
        sandbox: Any = NoSandbox(found.name)
        if found.sandbox and params.sandbox_id is not None:
            sandbox = RecordedSandbox(
                await self.sandboxes.connect(
                    params.sandbox_id, owner=sandbox_owner(params.ref.session_id)
                ),
                self.publisher.redis,
                workflow_id=params.ref.workflow_id,
                tool_call_id=call.tool_call_id,
            )
        state = load_state(agent, params.state)
        context = await load_context(
            self.contexts, agent, params.ref.workflow_id, params.context_ref
        )

        ctx = ToolContext(
            session_id=params.ref.session_id,
            tool_call_id=call.tool_call_id,
            sandbox=sandbox,
            messages=await read_transcript(self.transcripts, params.transcript, params.messages),
            state=state,
            context=context,
            stream_output=progress.output,
            idempotency_key=idempotency_key(workflow_id, call.tool_call_id),
        )
        try:
            output = await _until_interrupted(found.execute(args, ctx), ctx.cancelled)
        except SessionflowError:
            raise
        except Exception as err:  # the tool's own failure is the model's to handle
            return RunToolResult(error_text=capped_text(f"{type(err).__name__}: {err}"))
        state = dump_state(ctx.state)
        problem = state_size_problem(state)
        if problem is not None:
            return RunToolResult(
                error_text=f"{call.tool_name} ran, but its change was not saved: {problem}"
            )
        result = RunToolResult(output=self._capped(to_jsonable_python(output)), state=state)
        ensure_recordable(result, f"tool {call.tool_name}")
        return result

    def _capped(self, output: Any) -> Any:
        encoded = json.dumps(output)
        if len(encoded.encode()) <= self.max_output_bytes:
            return output
        return {
            "truncated": True,
            "preview": encoded[: self.max_output_bytes // 2],
            "note": f"output was {len(encoded)} bytes; only the start is kept",
        }


def _interrupted_text(latest: Any) -> str:
    """What an interrupted call tells the model: that it was stopped, and the output it
    had shown so far (a command's stdout and stderr), which the stream showed too."""
    if latest is None:
        return INTERRUPTED_TEXT
    if isinstance(latest, dict) and {"stdout", "stderr"} <= latest.keys():
        shown = "\n".join(str(latest[k]) for k in ("stdout", "stderr") if latest[k])
    else:
        shown = latest if isinstance(latest, str) else json.dumps(latest)
    if not shown:
        return INTERRUPTED_TEXT
    return capped_text(f"{INTERRUPTED_TEXT}; its output until then:\n{shown}")


async def _until_interrupted(work: Awaitable[Any], cancelled: asyncio.Event) -> Any:
    """Run a tool; when the activity is cancelled, set `cancelled` and give the tool
    `STOP_GRACE_SECONDS` to stop by itself before cancelling it. The activity's own
    cancellation propagates either way: an interrupted call has no output."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancelled.set()
        done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
        if not done:
            task.cancel()
            await asyncio.wait({task})
        raise
