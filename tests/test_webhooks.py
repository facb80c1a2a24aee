"""Webhooks: a signed POST when a turn ends, when a session waits for an approval and
when it ends; at least once, never blocking the session, never to private addresses
unless allowed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

import sessionflow
from sessionflow.activities.webhooks import WebhookConfig, post_pinned
from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import Agent, agent
from sessionflow.contract import SessionLimits, TurnStatus, WebhookEventType
from sessionflow.errors import WebhookRefused, WebhookSignatureInvalid
from sessionflow.ids import session_workflow_id
from sessionflow.providers.scripted import Script, ScriptedToolCall, ScriptStep
from sessionflow.webhooks import event_id, signature_header
from tests.conftest import Gateway, StartWorker
from tests.serving import serving
from tests.webhook_receiver import Receiver

SECRET = "whsec-test-0123456789"
TENANT_SECRET = "whsec-acme-9876543210"

APPROVAL_THEN_ANSWER = Script(
    name="hooked",
    delay=0,
    turns=[
        [
            ScriptStep(
                text="I need to run a command.",
                tool_calls=[ScriptedToolCall(tool="Bash", input={"command": "echo hi"})],
            ),
            ScriptStep(text="Done: {last_tool_output}"),
        ],
        [ScriptStep(text="You said {last_user_text}.")],
    ],
)


def hooked_agent(url: str | None) -> Agent:
    return agent(
        "hooked",
        model=APPROVAL_THEN_ANSWER,
        tools=[bash_tool()],
        needs_approval={"Bash": True},
        webhook_url=url,
    )


async def deliveries_tried(
    temporal: Client, workflow_id: str, *, count: int, attempts: int
) -> None:
    """Return once `count` webhook deliveries of the session have each been tried at
    least `attempts` times (their activity's attempt, as the server counts it)."""
    query = f"ParentWorkflowId = '{workflow_id}'"
    async with asyncio.timeout(60):
        while True:
            tries = []
            async for found in temporal.list_workflows(query):
                described = await temporal.get_workflow_handle(found.id).describe()
                pending = described.raw_description.pending_activities
                tries.append(max((a.attempt for a in pending), default=0))
            if len(tries) >= count and all(t >= attempts for t in tries):
                return
            await asyncio.sleep(0.5)


def allow_loopback(**extra: object) -> WebhookConfig:
    return WebhookConfig(secret=SECRET, allow_private=True, max_retry_interval_seconds=1.0, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    yield running
    await running.stop()


# -- the signature ---------------------------------------------------------------------


def test_verify_webhook_accepts_the_signed_body_and_refuses_a_tampered_or_old_one() -> None:
    body = b'{"id":"evt_1","type":"turn.finished"}'
    now = int(time.time())
    header = signature_header(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")

    event = sessionflow.verify_webhook(body, {"Sessionflow-Signature": header}, SECRET)
    assert event == {"id": "evt_1", "type": "turn.finished"}
    assert sessionflow.verify_webhook(body.decode(), header, SECRET)["id"] == "evt_1"

    with pytest.raises(WebhookSignatureInvalid, match="does not match"):
        sessionflow.verify_webhook(body.replace(b"evt_1", b"evt_2"), header, SECRET)
    with pytest.raises(WebhookSignatureInvalid, match="does not match"):
        sessionflow.verify_webhook(body, header, "another-secret")
    old = signature_header(SECRET, body, now - 600)
    with pytest.raises(WebhookSignatureInvalid, match="600 s ago"):
        sessionflow.verify_webhook(body, old, SECRET, tolerance=300, now=now)
    # The timestamp is signed too: an old signature cannot be given a new time.
    forged = f"t={now}," + old.split(",")[1]
    with pytest.raises(WebhookSignatureInvalid, match="does not match"):
        sessionflow.verify_webhook(body, forged, SECRET)
    for broken in ("", "v1=abc", "t=soon,v1=abc", f"t={now}"):
        with pytest.raises(WebhookSignatureInvalid, match="malformed"):
            sessionflow.verify_webhook(body, broken, SECRET)
    with pytest.raises(WebhookSignatureInvalid, match="no Sessionflow-Signature"):
        sessionflow.verify_webhook(body, {"Content-Type": "application/json"}, SECRET)


def test_agents_refuse_a_webhook_url_that_is_not_http() -> None:
    for bad in ("ftp://example.com/x", "/relative", "http://user:pw@example.com/", "http:// x"):
        with pytest.raises(ValueError, match="webhook URL"):
            hooked_agent(bad)


# -- delivery ----------------------------------------------------------------------------


async def test_each_event_reaches_a_loopback_receiver_once_per_idempotency_key_signed(
    start_worker: StartWorker, unique_id: str, receiver: Receiver
) -> None:
    receiver.fail_first = 1  # every event's first attempt fails: it is retried, same id
    client = await start_worker([hooked_agent(receiver.url)], webhooks=allow_loopback())
    session = client.agent("hooked").session(unique_id)
    result = await session.send("run it")
    approval_id = await _pending_approval(session)
    await session.approve({"approval_id": approval_id, "approved": False, "reason": "no"})
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FINISHED

    delivered = await receiver.wait_for(2)
    await session.close()
    delivered = await receiver.wait_for(3)

    by_type = {r.event["type"]: r for r in delivered}
    assert sorted(by_type) == ["approval.requested", "session.ended", "turn.finished"]
    ids = [r.event["id"] for r in delivered]
    assert len(set(ids)) == 3  # one delivery (answered 200) per idempotency key
    for received in receiver.requests:
        # Every attempt, the failed first ones too, is signed and names its event.
        event = sessionflow.verify_webhook(received.body, received.headers, SECRET)
        assert received.headers["sessionflow-event-id"] == event["id"]
        assert received.headers["content-type"] == "application/json"
    # The retry of each event carried the same id and the same body.
    for event_key in ids:
        attempts = [r for r in receiver.requests if r.event["id"] == event_key]
        assert [a.headers["x-answered"] for a in attempts] == ["503", "200"]
        assert attempts[0].body == attempts[1].body

    turn = by_type["turn.finished"].event
    assert set(turn) == {
        "id",
        "type",
        "sessionId",
        "outcome",
        "assistantMessageId",
        "usage",
        "createdAt",
    }
    assert turn["sessionId"] == unique_id
    assert turn["outcome"] == "finished"
    assert turn["assistantMessageId"] == result.assistant_message_id
    assert turn["usage"]["totalTokens"] > 0
    assert turn["id"] == event_id(
        session.workflow_id, WebhookEventType.TURN_FINISHED, result.assistant_message_id
    )
    asked = by_type["approval.requested"].event
    assert asked["assistantMessageId"] == result.assistant_message_id
    assert asked["outcome"] is None
    ended = by_type["session.ended"].event
    assert ended["outcome"] == "closed"
    assert ended["assistantMessageId"] is None
    assert ended["usage"]["totalTokens"] == turn["usage"]["totalTokens"]


async def test_a_receiver_down_through_many_tries_still_gets_the_events_and_the_session_goes_on(
    start_worker: StartWorker, unique_id: str
) -> None:
    """Deliveries outlive the runs that started them: every turn here continues the
    session as new, and the session is closed, all while the receiver is down."""
    receiver = Receiver()  # its port is chosen, but nothing listens on it yet
    client = await start_worker(
        [hooked_agent(None)],
        webhooks=allow_loopback(),
        limits=SessionLimits(continue_as_new_after_events=1),
    )
    session = client.agent("hooked").session(unique_id)
    # The session's own URL (its agent has none).
    first = await session.send("run it", webhook_url=receiver.url)
    approval_id = await _pending_approval(session)
    await session.approve({"approval_id": approval_id, "approved": False})
    assert (await first.outcome).status is TurnStatus.FINISHED
    # Not blocked by the receiver: the next turn runs and ends while it is down.
    second = await session.send("again")
    assert (await second.outcome).status is TurnStatus.FINISHED
    assert (await session.info()).run_count >= 2  # continued as new (after each turn)
    await session.close()
    assert receiver.requests == []

    # Down through many tries of every delivery (each tried again after 1 s at most).
    await deliveries_tried(client.temporal, session.workflow_id, count=4, attempts=5)
    await receiver.start()
    try:
        delivered = await receiver.wait_for(4, timeout=30)
    finally:
        await receiver.stop()
    assert sorted(r.event["type"] for r in delivered) == [
        "approval.requested",
        "session.ended",
        "turn.finished",
        "turn.finished",
    ]
    turns = {r.event["assistantMessageId"] for r in delivered if r.event["type"] == "turn.finished"}
    assert turns == {first.assistant_message_id, second.assistant_message_id}
    for received in delivered:
        sessionflow.verify_webhook(received.body, received.headers, SECRET)


async def test_a_private_url_is_refused_without_the_setting(
    start_worker: StartWorker, temporal: Client, unique_id: str, receiver: Receiver
) -> None:
    # `localhost` resolves to loopback: refused, however it is spelled.
    url = receiver.url.replace("127.0.0.1", "localhost")
    client = await start_worker(
        [hooked_agent(None)], webhooks=WebhookConfig(secret=SECRET, allow_private=False)
    )
    session = client.agent("hooked").session(unique_id)
    result = await session.send("run it", webhook_url=url)
    approval_id = await _pending_approval(session)
    await session.approve({"approval_id": approval_id, "approved": False})
    assert (await result.outcome).status is TurnStatus.FINISHED

    workflow_id = session_workflow_id("hooked", unique_id)
    key = event_id(workflow_id, WebhookEventType.TURN_FINISHED, result.assistant_message_id)
    delivery = temporal.get_workflow_handle(f"webhook:{workflow_id}:{key}")
    with pytest.raises(WorkflowFailureError) as failed:
        await _result_when_started(delivery)
    cause = failed.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == WebhookRefused.__name__
    assert "SESSIONFLOW_WEBHOOK_ALLOW_PRIVATE" in cause.message
    assert receiver.requests == []


async def test_a_redirect_to_a_private_address_is_refused() -> None:
    """The first hop is a public address literal (answered by a mock transport, so
    nothing leaves the machine); its redirect to loopback is refused."""
    hops: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        hops.append(str(request.url))
        return httpx.Response(307, headers={"location": "http://127.0.0.1:9/steal"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        with pytest.raises(WebhookRefused, match="private, loopback or link-local"):
            await post_pinned(http, "http://93.184.216.34/hook", b"{}", {}, allow_private=False)
        with pytest.raises(WebhookRefused, match=r"169\.254\.169\.254"):
            await post_pinned(
                http, "http://169.254.169.254/latest/meta-data", b"{}", {}, allow_private=False
            )
    assert hops == ["http://93.184.216.34/hook"]


async def test_a_tenant_session_gets_its_url_over_http_signed_with_the_tenant_secret(
    start_worker: StartWorker, unique_id: str, receiver: Receiver
) -> None:
    config = allow_loopback(tenant_secrets={"acme": TENANT_SECRET})
    async with _gateway(start_worker, hooked_agent(None), config) as gateway:
        headers = gateway.headers("acme")
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as http:
            path = f"/v1/sessions/{unique_id}"
            bad = await http.post(
                f"{path}/messages", json={"message": "hi", "webhookUrl": "ftp://x"}
            )
            assert bad.status_code == 422
            sent = await http.post(
                f"{path}/messages", json={"message": "run it", "webhookUrl": receiver.url}
            )
            assert sent.status_code == 202
            asked = await receiver.wait_for(1)
            assert asked[0].event["type"] == "approval.requested"
            # Changed alone, the URL applies at once, though the turn waits.
            patched = await http.patch(path, json={"webhookUrl": ""})
            assert patched.status_code == 200
            info = (await http.get(path)).json()
            await http.post(
                f"{path}/approvals",
                json={"approvalId": info["pendingApprovals"][0], "approved": False},
            )
            outcome = await http.get(
                f"{path}/messages/{sent.json()['assistantMessageId']}/outcome?wait=30"
            )
            assert outcome.json()["status"] == "finished"
    (received,) = receiver.requests
    event = sessionflow.verify_webhook(received.body, received.headers, TENANT_SECRET)
    assert event["sessionId"] == unique_id  # as the tenant names it
    with pytest.raises(WebhookSignatureInvalid):
        sessionflow.verify_webhook(received.body, received.headers, SECRET)


# -- plumbing ----------------------------------------------------------------------------


async def _pending_approval(session: sessionflow.Session) -> str:
    for _ in range(300):
        pending = (await session.info()).pending_approvals
        if pending:
            return pending[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was asked for")


async def _result_when_started(handle: object) -> object:
    from temporalio.client import WorkflowHandle

    assert isinstance(handle, WorkflowHandle)
    for _ in range(200):
        try:
            await handle.describe()
            break
        except RPCError:
            await asyncio.sleep(0.1)
    async with asyncio.timeout(60):
        return await handle.result()


@contextlib.asynccontextmanager
async def _gateway(
    start_worker: StartWorker, served: Agent, config: WebhookConfig
) -> AsyncIterator[Gateway]:
    """The HTTP gateway on a free port in front of a worker with webhook settings."""
    from sessionflow.gateway.app import create_app
    from sessionflow.gateway.config import GatewayConfig

    client = await start_worker([served], webhooks=config)
    keys = {"key-for-acme-0001": "acme"}
    gateway_config = GatewayConfig(api_keys=keys, default_agent=served.name)
    async with serving(create_app(client, gateway_config)) as url:
        yield Gateway(url=url, client=client, keys=keys)


def test_the_readme_webhooks_block_defines_an_agent_and_a_receiver_that_checks() -> None:
    """README.md's `<!-- example:webhooks -->` block, run as it stands."""
    from tests.test_readme_examples import run

    defined = run("example:webhooks", {})
    assert defined["assistant"].webhook_url == "https://api.example.com/hooks/sessionflow"
    receive, secret = defined["receive"], defined["SECRET"]
    body = b'{"id":"evt_1","type":"turn.finished","assistantMessageId":"msg_1"}'
    headers = {"Sessionflow-Signature": signature_header(secret, body)}
    assert receive(body, headers) == 200
    assert receive(body, headers) == 200  # the same id again: deduplicated
    assert defined["seen"] == {"evt_1"}
    assert receive(body.replace(b"evt_1", b"evt_2"), headers) == 400
