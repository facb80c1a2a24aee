"""Scripted stand-ins for every activity `SessionWorkflow` calls, registered BY NAME.

The workflow calls activities by their `ActivityName`, so a test registers these fakes
under the same names and scripts what each answers: model steps (`Fakes.steps`), tool
results (`Fakes.tool_answers`), and for the other activities failures or holds queued
per name (`Fakes.script`). Every call is recorded and announced, so a test waits for a
call (`Fakes.until`) instead of sleeping.

Committed transcripts go to a real `TranscriptStore` over an in-memory payload driver,
so a session can commit and rewind its transcript as it does in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)
from temporalio.exceptions import ApplicationError

from sessionflow.compaction import CompactionRecord
from sessionflow.contract import (
    ActivityName,
    CommitTranscriptParams,
    CompactParams,
    EndStreamParams,
    EnsureSandboxParams,
    EraseSessionParams,
    ExecResult,
    FinishReason,
    ModelStepParams,
    ModelStepResult,
    PublishParams,
    RewindTranscriptParams,
    RunToolParams,
    RunToolResult,
    SandboxExecParams,
    SandboxRef,
    SandboxStatus,
    TranscriptRef,
)
from sessionflow.errors import SessionflowError
from sessionflow.messages import StepStartPart, TextPart, ToolCall, ToolPart, Usage
from sessionflow.storage.transcripts import TranscriptStore

AGENT = "logic"
MODEL = "fake/model-1"
STEP_USAGE = Usage(input_tokens=10, output_tokens=5)
# How long a test waits for something the workflow is about to do (real time; every
# step here takes milliseconds, so this only bounds how long a broken test hangs).
PATIENCE = 10.0
# Cancellations reach an activity on a heartbeat response: throttle heartbeats
# little, so an interrupt arrives within ~50 ms.
HEARTBEAT_THROTTLE = timedelta(milliseconds=50)


class Gate:
    """A model step that blocks (heartbeating) until released or cancelled.

    On cancellation it returns `partial` (what the real model step does when the
    workflow interrupts it) or, when `partial` is None, lets the cancellation raise.
    """

    def __init__(
        self, result: ModelStepResult | None = None, partial: ModelStepResult | None = None
    ) -> None:
        self.result = result
        self.partial = partial
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.cancel_requested: bool | None = None

    async def run(self) -> ModelStepResult:
        self.started.set()
        try:
            await hold_until(self.release)
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            self.cancel_requested = details is not None and details.cancel_requested
            self.cancelled.set()
            if self.partial is None:
                raise
            return self.partial
        assert self.result is not None, "a released gate needs a result"
        return self.result


class Hold:
    """A scripted activity call that blocks (heartbeating) until released, then
    answers as the activity would have: a window in which the test can race it.
    A local activity cannot heartbeat: hold one with `local=True`."""

    def __init__(self, *, local: bool = False) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.local = local

    async def run(self) -> None:
        self.started.set()
        if self.local:
            await self.release.wait()
        else:
            await hold_until(self.release)


async def hold_until(release: asyncio.Event) -> None:
    """Wait for `release`, heartbeating, so a cancellation reaches the activity."""
    while not release.is_set():
        activity.heartbeat()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), timeout=0.02)


Step = ModelStepResult | Exception | Gate
ToolAnswer = RunToolResult | Exception
# What one call of a scripted activity does before answering normally.
Scripted = Exception | Hold


class MemoryDriver(StorageDriver):
    """A payload store in a dict, content-addressed like the file driver."""

    def __init__(self) -> None:
        self.payloads: dict[str, bytes] = {}

    def name(self) -> str:
        return "test.memory"

    def type(self) -> str:
        return "test.memory"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            blob = payload.SerializeToString()
            digest = hashlib.sha256(blob).hexdigest()
            self.payloads[digest] = blob
            claims.append(StorageDriverClaim(claim_data={"sha256": digest}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        found = []
        for claim in claims:
            payload = Payload()
            payload.ParseFromString(self.payloads[claim.claim_data["sha256"]])
            found.append(payload)
        return found


class Fakes:
    """The activities, scripted per test, recording what the workflow asked of them.

    Every call is announced, so a test can wait for one (`until`) instead of sleeping.
    """

    def __init__(self) -> None:
        self.steps: list[Step] = []
        # Answered when `steps` runs out (None: the step fails, ScriptExhausted).
        self.default_step: Callable[[ModelStepParams], ModelStepResult] | None = None
        self.tool_answers: list[ToolAnswer] = []
        self.model_calls: list[ModelStepParams] = []
        self.tool_calls: list[RunToolParams] = []
        self.ensure_calls: list[EnsureSandboxParams] = []
        self.exec_calls: list[SandboxExecParams] = []
        self.paused: list[str] = []
        self.killed: list[str] = []
        self.published: list[PublishParams] = []
        self.ended: list[EndStreamParams] = []
        self.erased: list[EraseSessionParams] = []
        self.commits: list[CommitTranscriptParams] = []
        self.rewinds: list[RewindTranscriptParams] = []
        self.announced: list[str] = []
        self.compactions: list[CompactParams] = []
        # Per activity, what its next calls do first (fail, or hold) in order.
        self.scripts: dict[ActivityName, list[Scripted]] = {}
        # When set, killing a sandbox waits for it (a slow kill, for races with close).
        self.kill_gate: asyncio.Event | None = None
        self.transcripts = TranscriptStore([MemoryDriver()])
        self._sandboxes = 0
        self._changed = asyncio.Condition()

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.model_step,
            self.run_tool,
            self.ensure_sandbox,
            self.sandbox_exec,
            self.sandbox_status,
            self.sandbox_pause,
            self.sandbox_kill,
            self.publish,
            self.forget_stream,
            self.erase_session,
            self.commit_transcript,
            self.rewind_transcript,
            self.announce_interrupt,
            self.compact,
        ]

    def script(self, name: ActivityName, *calls: Scripted) -> None:
        """What the next calls of activity `name` do before answering: raise an error
        (one per call; a retryable one is retried by the workflow's policy) or hold."""
        self.scripts.setdefault(name, []).extend(calls)

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), PATIENCE)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}") from None

    async def _record(self, calls: list[Any], params: Any) -> None:
        async with self._changed:
            calls.append(params)
            self._changed.notify_all()

    async def _play(self, name: ActivityName) -> None:
        queued = self.scripts.get(name)
        if not queued:
            return
        scripted = queued.pop(0)
        if isinstance(scripted, Hold):
            await scripted.run()
        else:
            raise scripted

    def published_chunks(self, message_id: str | None = None) -> list[dict[str, Any]]:
        return [
            chunk
            for p in self.published
            if message_id is None or p.ref.message_id == message_id
            for chunk in p.chunks
        ]

    @activity.defn(name=ActivityName.MODEL_STEP.value)
    async def model_step(self, params: ModelStepParams) -> ModelStepResult:
        await self._record(self.model_calls, params)
        if not self.steps:
            if self.default_step is not None:
                return self.default_step(params)
            raise ApplicationError(
                "the test scripted no more model steps", type="ScriptExhausted", non_retryable=True
            )
        step = self.steps.pop(0)
        if isinstance(step, Gate):
            return await step.run()
        if isinstance(step, Exception):
            raise step
        return step

    @activity.defn(name=ActivityName.RUN_TOOL.value)
    async def run_tool(self, params: RunToolParams) -> RunToolResult:
        await self._record(self.tool_calls, params)
        await self._play(ActivityName.RUN_TOOL)
        answer = self.tool_answers.pop(0) if self.tool_answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer or RunToolResult(output={"ran": params.call.tool_name})

    @activity.defn(name=ActivityName.ENSURE_SANDBOX.value)
    async def ensure_sandbox(self, params: EnsureSandboxParams) -> SandboxRef:
        await self._record(self.ensure_calls, params)
        await self._play(ActivityName.ENSURE_SANDBOX)
        if params.must_exist and params.sandbox_id is not None:
            return SandboxRef(sandbox_id=params.sandbox_id)
        self._sandboxes += 1
        return SandboxRef(sandbox_id=f"sb-{self._sandboxes}")

    @activity.defn(name=ActivityName.SANDBOX_EXEC.value)
    async def sandbox_exec(self, params: SandboxExecParams) -> ExecResult:
        await self._record(self.exec_calls, params)
        await self._play(ActivityName.SANDBOX_EXEC)
        return ExecResult(exit_code=0, stdout="", stderr="")

    @activity.defn(name=ActivityName.SANDBOX_STATUS.value)
    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus | None:
        await self._play(ActivityName.SANDBOX_STATUS)
        return SandboxStatus.PAUSED if sandbox_id in self.paused else SandboxStatus.RUNNING

    @activity.defn(name=ActivityName.SANDBOX_PAUSE.value)
    async def sandbox_pause(self, sandbox_id: str) -> None:
        await self._record(self.paused, sandbox_id)
        await self._play(ActivityName.SANDBOX_PAUSE)

    @activity.defn(name=ActivityName.SANDBOX_KILL.value)
    async def sandbox_kill(self, sandbox_id: str) -> None:
        await self._record(self.killed, sandbox_id)
        if self.kill_gate is not None:
            await self.kill_gate.wait()
        await self._play(ActivityName.SANDBOX_KILL)

    @activity.defn(name=ActivityName.PUBLISH.value)
    async def publish(self, params: PublishParams) -> None:
        await self._record(self.published, params)

    @activity.defn(name=ActivityName.FORGET_STREAM.value)
    async def forget_stream(self, params: EndStreamParams) -> None:
        await self._record(self.ended, params)
        await self._play(ActivityName.FORGET_STREAM)

    @activity.defn(name=ActivityName.ERASE_SESSION.value)
    async def erase_session(self, params: EraseSessionParams) -> None:
        await self._record(self.erased, params)
        await self._play(ActivityName.ERASE_SESSION)

    @activity.defn(name=ActivityName.COMMIT_TRANSCRIPT.value)
    async def commit_transcript(self, params: CommitTranscriptParams) -> TranscriptRef:
        await self._record(self.commits, params)
        await self._play(ActivityName.COMMIT_TRANSCRIPT)
        return await self.transcripts.append(params.head, params.fragments)

    @activity.defn(name=ActivityName.ANNOUNCE_INTERRUPT.value)
    async def announce_interrupt(self, workflow_id: str) -> None:
        await self._record(self.announced, workflow_id)

    @activity.defn(name=ActivityName.REWIND_TRANSCRIPT.value)
    async def rewind_transcript(self, params: RewindTranscriptParams) -> TranscriptRef:
        await self._record(self.rewinds, params)
        await self._play(ActivityName.REWIND_TRANSCRIPT)
        try:
            return await self.transcripts.rewind(params.head, params.last_message_id)
        except SessionflowError as err:
            raise non_retryable(type(err).__name__, str(err)) from err

    @activity.defn(name=ActivityName.COMPACT.value)
    async def compact(self, params: CompactParams) -> CompactionRecord:
        """Summarises as a model would: a summary naming what it covers."""
        await self._record(self.compactions, params)
        await self._play(ActivityName.COMPACT)
        return params.proposal.model_copy(
            update={
                "summary": f"summary of {params.proposal.summarized} messages",
                "model": MODEL,
                "usage": STEP_USAGE,
            }
        )


# -- model step results -------------------------------------------------------------------


def text_step(text: str, *, state: dict[str, Any] | None = None) -> ModelStepResult:
    return ModelStepResult(
        parts=[StepStartPart(), TextPart(text=text)],
        tool_calls=[],
        usage=STEP_USAGE,
        model=MODEL,
        finish_reason=FinishReason.STOP,
        state=state,
    )


def tool_step(
    *calls: ToolCall, needs_approval: Sequence[bool] = (), uses_sandbox: Sequence[bool] = ()
) -> ModelStepResult:
    return ModelStepResult(
        parts=[
            StepStartPart(),
            *(
                ToolPart(tool_call_id=c.tool_call_id, tool_name=c.tool_name, input=c.input)
                for c in calls
            ),
        ],
        tool_calls=list(calls),
        usage=STEP_USAGE,
        model=MODEL,
        finish_reason=FinishReason.TOOL_CALLS,
        needs_approval=list(needs_approval),
        uses_sandbox=list(uses_sandbox),
    )


def bash(command: str, call_id: str = "call-1") -> ToolCall:
    return ToolCall(tool_call_id=call_id, tool_name="bash", input={"command": command})


def non_retryable(error_type: str, message: str) -> ApplicationError:
    """What the real activities raise for business failures (`to_application_error`)."""
    return ApplicationError(message, type=error_type, non_retryable=True)


def retryable(error_type: str, message: str) -> ApplicationError:
    """A transient failure: the workflow's retry policy tries the activity again."""
    return ApplicationError(message, type=error_type)
