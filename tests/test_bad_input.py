"""Malformed input thrown at live sessions through the public API (property-based).

Hypothesis generates four kinds of bad input: `send` inputs, approvals against a pending
approval, contexts for an agent with a `context_schema`, and gateway HTTP requests.
Each must be refused with a documented error (`sessionflow.errors.InvalidInput` or a
subclass, with a message; over HTTP a 4xx `{"error": {"code", "message"}}` answer) or,
for `send`, be accepted as a normal turn. Nothing may leak a raw exception, fail a
workflow task, end the workflow, or change the session; a normal turn afterwards
answers exactly as scripted in `tests/agents.py`.

Hypothesis runs synchronous test functions, while the fixtures' clients live on the
test's event loop: each property runs in a worker thread (`asyncio.to_thread`) and
hands every example back to the loop with `asyncio.run_coroutine_threadsafe`. Runs are
derandomized and keep no example database, so CI sees the same examples every time.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from sessionflow.client.inputs import MAX_MESSAGE_BYTES
from sessionflow.client.session import SendResult, Session
from sessionflow.contract import ApprovalResponse, SessionStatus, TurnStatus
from sessionflow.errors import ApprovalNotPending, InvalidInput
from sessionflow.messages import Role
from tests.agents import (
    APPROVAL_SCRIPT,
    CONTEXT_SCRIPT,
    TOOL_SCRIPT,
    approval_agent,
    context_agent,
    tool_agent,
)
from tests.conftest import Gateway, StartWorker

T = TypeVar("T")

SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=False,
    # No shrinking: the examples are small by construction, and against a live stack a
    # failing example can take seconds (a timeout), so shrinking could outlast the
    # test's timeout. The failure report shows the first failing example as drawn.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
EXAMPLE_TIMEOUT = 30.0


async def check_property(
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Coroutine[Any, Any, None]],
    *,
    max_examples: int,
) -> None:
    """Run `check` on examples of `strategy`, on this event loop, driven by hypothesis
    from a worker thread (it cannot drive a coroutine on a loop that is running)."""
    loop = asyncio.get_running_loop()

    @settings(SETTINGS, max_examples=max_examples)
    @given(strategy)
    def run(value: T) -> None:
        future = asyncio.run_coroutine_threadsafe(check(value), loop)
        try:
            future.result(EXAMPLE_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise

    await asyncio.to_thread(run)


async def check_families(
    families: dict[str, st.SearchStrategy[T]],
    check: Callable[[T], Coroutine[Any, Any, None]],
    *,
    max_examples: int,
) -> None:
    """`check_property` for each family of input with its own budget: one `one_of` of
    them all draws its first branches far more often, leaving the last ones untested."""
    for name, strategy in families.items():
        try:
            await check_property(strategy, check, max_examples=max_examples)
        except BaseException as err:
            err.add_note(f"(input family: {name})")
            raise


async def assert_workflow_healthy(temporal: Client, workflow_id: str) -> None:
    """Still running, and no workflow task ever failed (a failed task is what a
    non-determinism or an exception escaping a handler looks like in history)."""
    handle = temporal.get_workflow_handle(workflow_id)
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.RUNNING, description.status
    history = await handle.fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert not failed, failed[0]


def scripted_text(steps: list[Any], **values: str) -> str:
    """The text a scripted turn answers: its steps' texts with the placeholders filled."""
    text = "".join(step.text for step in steps)
    assert set(re.findall(r"\{(\w+)\}", text)) <= set(values), text
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def tooling_reply(turn: int, said: str) -> str:
    """TOOL_SCRIPT's answer to the `turn`-th user message (its turns alternate)."""
    steps = TOOL_SCRIPT.turns[(turn - 1) % len(TOOL_SCRIPT.turns)]
    return scripted_text(
        steps,
        last_tool_output="hello",  # the tool turn runs `cat a.txt` on "hello"
        last_user_text=said,
        turn=str(turn),
        message_count=str(2 * turn),  # earlier turns, the message and the reply
    )


class Big(str):
    """A long string whose repr stays short in hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"Big({len(self)} x {str.__repr__(self[:1])})"


def _cycle() -> dict[str, Any]:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    return cyclic


def _is_json(value: Any, depth: int = 0) -> bool:
    """JSON data as is: no tuples or non-string keys, which `json.dumps` would quietly
    turn into lists and strings (and so possibly into valid input), and no cycles."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if depth > 20:
        return False
    if isinstance(value, list):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def jsonable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy.filter(_is_json)


# -- building blocks -----------------------------------------------------------------

PART_TYPES = {"text", "reasoning", "step-start", "tool"}
STATUSES = {"streaming", "complete", "interrupted", "failed"}
BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}

surrogate = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
# Text with a lone surrogate: what a JSON "\ud800" escape decodes to. Valid `str`, but
# it cannot be encoded as UTF-8 for Temporal, Redis or an HTTP response.
surrogate_text = st.tuples(st.text(max_size=6), surrogate, st.text(max_size=6)).map("".join)
blank_text = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\u00a0\u2028\u3000", max_size=12)
huge_text = st.integers(MAX_MESSAGE_BYTES + 1, MAX_MESSAGE_BYTES + 4096).map(lambda n: Big("x" * n))
# Wrong types for a string field (pydantic does not coerce these to str).
not_text = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
not_bool = st.one_of(
    st.none(), st.integers(), st.floats(), st.text(max_size=6), st.lists(st.booleans(), max_size=2)
)
# Values no JSON encoder takes: arbitrary objects, invalid UTF-8, cycles, functions.
alien = st.one_of(
    st.builds(object),
    st.binary(max_size=6).map(lambda b: b"\xff" + b),
    st.builds(_cycle),
    st.just(Ellipsis),
    st.just(lambda: None),
)
alien_dict = alien.map(lambda value: {"field": value})
nonstr_key = st.one_of(st.integers(), st.tuples(st.integers()), st.none(), st.floats())

valid_part = st.one_of(
    st.text(min_size=1, max_size=10).map(lambda t: {"type": "text", "text": t}),
    st.just({"type": "step-start"}),
)
ok_parts = st.lists(valid_part, min_size=1, max_size=2)
junk_part = st.one_of(
    not_text,
    st.text(max_size=8),
    st.fixed_dictionaries(
        {"type": st.one_of(st.text(max_size=10).filter(lambda t: t not in PART_TYPES), not_text)}
    ),
    st.just({"type": "text"}),
    st.fixed_dictionaries({"type": st.just("text"), "text": not_text}),
    st.fixed_dictionaries({"type": st.just("text"), "text": surrogate_text}),
    st.builds(
        lambda key, value: {"type": "text", "text": "hi", key: value},
        st.one_of(st.text(min_size=1, max_size=8), surrogate_text).filter(
            lambda k: k not in {"type", "text"}
        ),
        not_text,
    ),
    st.fixed_dictionaries({"type": st.just("tool"), "tool_call_id": st.text(max_size=5)}),
    st.fixed_dictionaries(
        {
            "type": st.just("tool"),
            "tool_call_id": st.just("call-1"),
            "tool_name": st.just("Bash"),
            "input": st.one_of(not_text.filter(lambda v: not isinstance(v, dict)), alien_dict),
        }
    ),
)
# A parts list holding at least one bad part among good ones, or no parts at all.
bad_parts = st.one_of(
    st.just([]),
    st.tuples(st.lists(valid_part, max_size=2), junk_part, st.lists(valid_part, max_size=2)).map(
        lambda t: [*t[0], t[1], *t[2]]
    ),
)
bad_role = st.one_of(
    st.just("assistant"), st.text(max_size=8).filter(lambda r: r != "user"), not_text
)
_bad_ui_message = st.one_of(
    st.fixed_dictionaries({"role": bad_role, "parts": ok_parts}),
    st.fixed_dictionaries({"parts": ok_parts}),
    st.just({"role": "user"}),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "parts": st.one_of(not_text.filter(lambda v: not isinstance(v, list)), st.text()),
        }
    ),
    st.fixed_dictionaries({"role": st.just("user"), "parts": bad_parts}),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "parts": ok_parts,
            "metadata": st.one_of(
                not_text.filter(lambda v: v is not None and not isinstance(v, dict)),
                st.dictionaries(nonstr_key, st.integers(), min_size=1, max_size=2),
                alien_dict,
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "parts": ok_parts,
            "id": not_text.filter(lambda v: not isinstance(v, str)),
        }
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "parts": ok_parts,
            "status": st.text(max_size=8).filter(lambda s: s not in STATUSES),
        }
    ),
)
# UI messages that are wrong, some also carrying keys that are not strings.
bad_ui_message = st.one_of(
    _bad_ui_message,
    st.builds(lambda key, message: {key: "junk", **message}, nonstr_key, _bad_ui_message),
)


def bad_approvals(ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Approval payloads that are malformed whatever the id: none may approve anything."""
    ok = st.booleans()
    return st.one_of(
        not_text.filter(lambda v: not isinstance(v, dict)),
        st.text(max_size=10),
        alien,
        st.just({}),
        st.fixed_dictionaries({"approval_id": ids}),
        st.fixed_dictionaries({"approved": ok}),
        st.fixed_dictionaries({"approval_id": ids, "approved": not_bool}),
        st.fixed_dictionaries({"approvalId": ids, "approved": not_bool}),
        st.fixed_dictionaries(
            {"approval_id": not_text.filter(lambda v: not isinstance(v, str)), "approved": ok}
        ),
        st.fixed_dictionaries(
            {"approval_id": ids, "approved": ok, "reason": not_text.filter(lambda v: v is not None)}
        ),
        st.fixed_dictionaries(
            {"approval_id": ids, "approved": ok, "reason": st.one_of(surrogate_text, huge_text)}
        ),
        st.fixed_dictionaries({"approval_id": surrogate_text, "approved": ok}),
    )


def as_approval(payload: Any) -> dict[str, Any]:
    return {"type": "approval", "approval": payload}


# -- 1. malformed `send` inputs --------------------------------------------------------


@dataclass(frozen=True)
class Send:
    input: Any
    options: dict[str, Any] = field(default_factory=dict)


junk_input = st.one_of(
    not_text,
    st.complex_numbers(),
    st.binary(max_size=8),
    st.sets(st.integers(), max_size=2),
    st.tuples(valid_part),
    alien,
    st.just(""),
    blank_text,
    huge_text,
    surrogate_text,
    st.just({}),
)
unknown_type_dict = st.builds(
    lambda kind, junk: {"type": kind, "junk": junk},
    st.one_of(st.text(max_size=10).filter(lambda t: t not in {"message", "approval"}), not_text),
    not_text,
)
message_wrapper = st.one_of(
    st.just({"type": "message"}),
    st.one_of(bad_ui_message, bad_parts, junk_input).map(
        lambda m: {"type": "message", "message": m}
    ),
)
approval_wrapper = st.one_of(
    st.just({"type": "approval"}),
    bad_approvals(st.text(max_size=20)).map(as_approval),
    # Well-formed, but no approval is pending in the session: ApprovalNotPending.
    st.builds(
        lambda i, ok: as_approval({"approval_id": i, "approved": ok}),
        st.text(max_size=20),
        st.booleans(),
    ),
)
valid_input = st.sampled_from(
    [
        "hello there",
        [{"type": "text", "text": "hi"}],
        {"role": "user", "parts": [{"type": "text", "text": "hi"}]},
        {"type": "message", "message": "hi"},
    ]
)
bad_options = st.one_of(
    st.fixed_dictionaries(
        {
            "interrupt_if_streaming": st.one_of(
                st.none(), st.integers(), st.text(max_size=5), st.lists(st.booleans(), max_size=1)
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "sandbox_id": st.one_of(
                st.integers(),
                st.just(""),
                st.lists(st.text(max_size=3), max_size=1),
                surrogate_text,
                st.integers(257, 2000).map(lambda n: Big("s" * n)),
                st.builds(object),
            )
        }
    ),
    # The tooling agent has no context schema: context only has to be JSON data.
    st.fixed_dictionaries({"context": st.one_of(alien, alien_dict)}),
)
BAD_SENDS = {
    "not a message": st.builds(Send, junk_input),
    "bad parts list": st.builds(Send, bad_parts),
    "bad UI message": st.builds(Send, bad_ui_message),
    "unknown type": st.builds(Send, unknown_type_dict),
    "bad message wrapper": st.builds(Send, message_wrapper),
    "bad approval wrapper": st.builds(Send, approval_wrapper),
    "bad options": st.builds(Send, valid_input, bad_options),
    # Text that cannot be encoded for Temporal, wherever it sits in a message.
    "lone surrogates": st.one_of(
        surrogate_text,
        surrogate_text.map(lambda t: [{"type": "text", "text": t}]),
        surrogate_text.map(lambda t: {"role": "user", "parts": [{"type": "reasoning", "text": t}]}),
        surrogate_text.map(
            lambda t: {"id": t, "role": "user", "parts": [{"type": "text", "text": "hi"}]}
        ),
        surrogate_text.map(lambda t: {"type": "message", "message": t}),
    ).map(Send),
}


async def test_malformed_sends_are_refused_clearly_and_the_session_keeps_working(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    first = await session.send("make a file and read it")
    assert (await first.outcome).status is TurnStatus.FINISHED
    accepted: list[Send] = []

    async def check(case: Send) -> None:
        try:
            result = await session.send(case.input, **case.options)
        except InvalidInput as err:
            assert str(err).strip(), "an error without a message"
            # Refused before reaching the session: nothing was queued or recorded.
            info = await session.info()
            assert (info.message_count, info.queued, info.busy) == (2 + 2 * len(accepted), 0, False)
            return
        # Accepted: then it is a valid turn, and the session answers it.
        accepted.append(case)
        assert (await asyncio.wait_for(result.outcome, 20)).status is TurnStatus.FINISHED

    await check_families(BAD_SENDS, check, max_examples=30)

    await assert_workflow_healthy(client.temporal, session.workflow_id)
    users = sum(m.role is Role.USER for m in await session.history())
    assert users == 1 + len(accepted), accepted
    result = await session.send("one more, please")
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    assert reply.text() == tooling_reply(users + 1, "one more, please")
    await assert_workflow_healthy(client.temporal, session.workflow_id)


# -- 2. malformed approvals against a pending one --------------------------------------


@dataclass(frozen=True)
class Approval:
    via: str  # "approve" or "send"
    payload: Any
    expect: type[InvalidInput] = InvalidInput


async def first_approval_id(result: SendResult) -> str:
    async for event in result.stream():
        if event.type == "tool-approval-request":
            approval_id: str = event.chunk.approval_id  # type: ignore[attr-defined]
            return approval_id
    raise AssertionError("no approval request")


def bad_approval_calls(pending: str) -> dict[str, st.SearchStrategy[Approval]]:
    # Ids near the real one, and the real one itself: a malformed answer must not
    # approve (or deny) the call even when it names the right approval.
    ids = st.one_of(
        st.just(pending),
        st.sampled_from([pending.upper(), pending + " ", pending[:-1], " " + pending]),
        st.text(max_size=30),
    )
    unknown = st.one_of(
        st.sampled_from([pending.upper(), pending + " ", pending[:-1], ""]), st.text(max_size=30)
    ).filter(lambda i: i != pending)
    reasons = st.one_of(st.none(), st.text(max_size=20))
    return {
        "approve(malformed)": bad_approvals(ids).map(lambda p: Approval("approve", p)),
        "send(malformed approval)": bad_approvals(ids).map(
            lambda p: Approval("send", as_approval(p))
        ),
        "send(approval without answer)": st.just(Approval("send", {"type": "approval"})),
        "approve(unsendable reason)": st.builds(
            lambda reason, ok: Approval(
                "approve", ApprovalResponse(approval_id=pending, approved=ok, reason=reason)
            ),
            st.one_of(surrogate_text, huge_text),
            st.booleans(),
        ),
        # Well-formed answers to approvals that are not pending.
        "approve(unknown id)": st.builds(
            lambda i, ok, reason: Approval(
                "approve",
                ApprovalResponse(approval_id=i, approved=ok, reason=reason),
                ApprovalNotPending,
            ),
            unknown,
            st.booleans(),
            reasons,
        ),
        "send(unknown id)": st.builds(
            lambda i, ok: Approval(
                "send", as_approval({"approvalId": i, "approved": ok}), ApprovalNotPending
            ),
            unknown,
            st.booleans(),
        ),
        "approve(dict, unknown id)": st.builds(
            lambda i, ok: Approval(
                "approve", {"approval_id": i, "approved": ok}, ApprovalNotPending
            ),
            unknown,
            st.booleans(),
        ),
    }


async def test_malformed_approvals_leave_the_pending_approval_pending(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([approval_agent])
    session = client.agent("approver").session(unique_id)
    result = await session.send("please run it")
    pending = await first_approval_id(result)

    async def check(case: Approval) -> None:
        with pytest.raises(InvalidInput) as caught:
            if case.via == "approve":
                await session.approve(case.payload)
            else:
                await session.send(case.payload)
        assert isinstance(caught.value, case.expect), repr(caught.value)
        assert str(caught.value).strip(), "an error without a message"
        info = await session.info()
        assert info.pending_approvals == [pending]
        assert info.status is SessionStatus.NEEDS_APPROVAL
        assert info.message_count == 2

    await check_families(bad_approval_calls(pending), check, max_examples=20)

    await assert_workflow_healthy(client.temporal, session.workflow_id)
    approved = await session.approve(ApprovalResponse(approval_id=pending, approved=True))
    assert approved.assistant_message_id == result.assistant_message_id
    assert (await approved.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    assert reply.text() == scripted_text(APPROVAL_SCRIPT.turns[0], last_tool_output="approved-run")
    assert (await session.info()).status is SessionStatus.IDLE
    await assert_workflow_healthy(client.temporal, session.workflow_id)


# -- 3. malformed contexts for an agent with a context schema ---------------------------


class Lookalike(BaseModel):
    """Another model with Caller's fields: not a Caller."""

    user: str
    api_token: str


@dataclass(frozen=True)
class BadContext:
    secret: str
    context: Any


CALLER_FIELDS = {"user", "api_token", "premium"}


@st.composite
def bad_contexts(draw: st.DrawFn, kind: str) -> BadContext:
    """A context that does not match `Caller` (`kind` says how), with a distinctive
    secret in it."""
    secret = "sk-" + draw(st.text(string.ascii_letters + string.digits, min_size=16, max_size=24))
    wrong_str = st.sampled_from(
        [None, True, 7, 2.5, [secret], (secret,), {secret}, {"token": secret}, {secret: secret}]
    )
    wrong_bool = st.one_of(
        st.sampled_from([secret, f"{secret} yes", [secret], {"flag": secret}, None, 2, -1, 0.5]),
        st.text(max_size=8).filter(lambda s: s.lower() not in BOOL_WORDS),
    )
    context: dict[Any, Any] = {
        "user": draw(st.sampled_from([secret, "ada"])),
        "api_token": secret,
    }
    if kind == "not-a-dict":
        other = draw(
            st.sampled_from(
                [
                    secret,
                    [secret],
                    (secret,),
                    42,
                    4.2,
                    True,
                    secret.encode(),
                    {"user", secret},
                    Lookalike(user=secret, api_token=secret),
                ]
            )
        )
        return BadContext(secret, other)
    if kind == "missing":
        for name in draw(st.sets(st.sampled_from(["user", "api_token"]), min_size=1)):
            del context[name]
    elif kind == "premium":
        context["premium"] = draw(wrong_bool)
    else:
        context[kind] = draw(wrong_str)
    junk = draw(
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.just(secret), nonstr_key).filter(
                lambda k: k not in CALLER_FIELDS
            ),
            st.one_of(st.just(secret), wrong_str),
            max_size=3,
        )
    )
    return BadContext(secret, {**junk, **context})


async def test_malformed_contexts_are_refused_without_echoing_them(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([context_agent])
    session = client.agent(context_agent).session(unique_id)
    first = await session.send("who am I?", context={"user": "ada", "api_token": "tok-first"})
    assert (await first.outcome).status is TurnStatus.FINISHED
    secrets: list[str] = []

    async def check(case: BadContext) -> None:
        secrets.append(case.secret)
        with pytest.raises(InvalidInput) as caught:
            await session.send("who am I?", context=case.context)
        message = str(caught.value)
        assert message.startswith("context does not match Caller: "), message
        assert case.secret not in message and case.secret not in repr(caught.value), message

    kinds = ["missing", "user", "api_token", "premium", "not-a-dict"]
    await check_families({k: bad_contexts(k) for k in kinds}, check, max_examples=20)

    await assert_workflow_healthy(client.temporal, session.workflow_id)
    # Refused before anything was stored: no context in Redis (the first turn's was
    # deleted when it ended), no new message, and no secret in the workflow's history.
    pattern = f"sf:{{{session.workflow_id}}}:ctx:*"
    assert [k async for k in client.redis.scan_iter(match=pattern)] == []
    assert (await session.info()).message_count == 2
    history = await client.temporal.get_workflow_handle(session.workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert not [s for s in secrets if s.encode() in raw]

    result = await session.send("who am I?", context={"user": "bob", "api_token": "tok-1234567"})
    assert (await result.outcome).status is TurnStatus.FINISHED
    reply = (await session.history())[-1]
    whoami = json.dumps({"user": "bob", "token_length": len("tok-1234567")})
    expected = scripted_text(
        CONTEXT_SCRIPT.turns[0], system="You are helping bob.", last_tool_output=whoami
    )
    assert reply.text() == expected
    assert [k async for k in client.redis.scan_iter(match=pattern)] == []
    await assert_workflow_healthy(client.temporal, session.workflow_id)


# -- 4. malformed gateway requests -------------------------------------------------------

BODY_LIMIT = 64 * 1024  # the `gateway` fixture's max_body_bytes
ALL_FIELDS = {
    "message",
    "interrupt_if_streaming",
    "context",
    "sandbox_id",
    "approval_id",
    "approvalId",
    "approved",
    "reason",
    "last_message_id",
    "id",
    "messages",
    "trigger",
    "messageId",
}
# The README's gateway errors: status and code.
DOCUMENTED_ERRORS = {
    (400, "malformed_json"),
    (404, "session_not_found"),
    (404, "message_not_found"),
    (404, "sandbox_not_found"),
    (409, "approval_not_pending"),
    (409, "session_busy"),
    (413, "payload_too_large"),
    (422, "invalid_request"),
    (422, "invalid_input"),
    (400, "invalid_id"),
    (404, "agent_not_registered"),
    (408, "request_timeout"),
    (416, "cursor_out_of_range"),
    (429, "too_many_streams"),
    (431, "request_headers_too_large"),
}
ENTRY_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")
U64_MAX = 2**64 - 1
WRONG_CONTENT_TYPES = [
    None,
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/octet-stream",
    "garbage",
]


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # under /v1/sessions/{id} when it starts with "/v1", else from the root
    body: Any = None  # JSON-encoded unless `raw`
    raw: bytes | None = None
    content_type: str | None = "application/json"
    oversize: int = 0  # send a valid body padded to this many bytes instead
    streamed: bool = False  # without a content-length (chunked)
    after: str | None = None
    cursor_in_header: bool = False
    expect: int | None = None  # the exact status, when only one is right

    def __repr__(self) -> str:
        shown = {k: v for k, v in vars(self).items() if v not in (None, False, 0)}
        text = repr(shown)
        return f"Call({text[:400]}{'...' if len(text) > 400 else ''})"


def gateway_calls(session_id: str, message_ids: list[str]) -> dict[str, st.SearchStrategy[Call]]:
    """Families of bad requests to the live session `session_id` (whose messages have
    `message_ids`), by route and by what is wrong with them."""
    scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    value = st.recursive(
        scalar,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
    not_object = value.filter(lambda v: not isinstance(v, dict))
    # Error messages name unknown fields; some names hold lone surrogates.
    unknown_key = st.one_of(st.text(min_size=1, max_size=8), surrogate_text).filter(
        lambda k: k not in ALL_FIELDS
    )
    junk_object = st.dictionaries(unknown_key, value, min_size=1, max_size=4)
    not_str = value.filter(lambda v: v is not None and not isinstance(v, str))
    lax_not_bool = st.one_of(
        st.none(),
        st.lists(scalar, max_size=2),
        st.integers().filter(lambda i: i not in (0, 1)),
        st.floats().filter(lambda f: f not in (0.0, 1.0)),
        st.text(max_size=6).filter(lambda s: s.lower() not in BOOL_WORDS),
    )
    send_bodies = {
        "message not text or a message": st.one_of(
            not_text.filter(lambda v: not isinstance(v, list | dict)), blank_text, surrogate_text
        ).map(lambda m: {"message": m}),
        "bad UI message": jsonable(bad_ui_message).map(lambda m: {"message": m}),
        # JSON can spell any field name, even one with a lone surrogate, which no
        # response could echo as it is (the status makes the message invalid anyway).
        "field name with a lone surrogate": st.builds(
            lambda key, where: {
                "message": {
                    "role": "user",
                    "parts": [{"type": "text", "text": "hi", **({key: 1} if where else {})}],
                    **({} if where else {"metadata": {key: 1}, "status": {key: 1}}),
                }
            },
            surrogate_text,
            st.booleans(),
        ),
        "bad parts list": jsonable(bad_parts).map(lambda m: {"message": m}),
        "bad wrapper": jsonable(
            st.one_of(message_wrapper, approval_wrapper, unknown_type_dict)
        ).map(lambda m: {"message": m}),
        "unknown field": st.builds(lambda k, v: {"message": "hi", k: v}, unknown_key, value),
        "bad options": st.one_of(
            lax_not_bool.map(lambda v: {"interrupt_if_streaming": v}),
            value.filter(lambda v: v is not None and not isinstance(v, dict)).map(
                lambda v: {"context": v}
            ),
            not_str.map(lambda v: {"sandbox_id": v}),
        ).map(lambda options: {"message": "hi", **options}),
    }
    approval_bodies = {
        "malformed": jsonable(bad_approvals(st.text(max_size=20))),
        # Well-formed, but nothing is pending: 409.
        "not pending": st.builds(
            lambda i, ok: {"approval_id": i, "approved": ok}, st.text(max_size=20), st.booleans()
        ),
    }
    patch_bodies = {
        "unknown last_message_id": st.one_of(
            st.text(max_size=12).map(lambda s: "msg_unknown_" + s), not_str
        ).map(lambda v: {"last_message_id": v}),
        "bad sandbox_id": st.one_of(
            st.sampled_from(["", "../../etc", "a b", "sbx-does-not-exist"]),
            st.text(max_size=12),
            not_str,
        ).map(lambda v: {"sandbox_id": v}),
        "lone surrogates": st.builds(
            lambda field, text: {field: text},
            st.sampled_from(["last_message_id", "sandbox_id"]),
            surrogate_text,
        ),
    }
    good_chat_message = {"id": "u-1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    bad_chat_ids = st.one_of(
        st.sampled_from(["", "a b", "a\tb", "a\x00b", "{a", "a}", "c" * 196]),
        st.integers(196, 400).map(lambda n: "c" * n),
        value.filter(lambda v: not isinstance(v, str)),
    )
    # The last message is bad; some carry the ids of the session's real messages, which
    # a regenerate would rewind to if it rewound before validating.
    bad_last = st.one_of(
        jsonable(bad_ui_message),
        st.fixed_dictionaries(
            {"role": st.just("user"), "parts": jsonable(bad_parts)},
            optional={"id": st.sampled_from(message_ids)},
        ),
        st.fixed_dictionaries(
            {"id": st.sampled_from(message_ids), "role": st.just("user"), "parts": st.just([])}
        ),
    )
    chat_bodies = {
        "bad session id": bad_chat_ids.map(lambda i: {"id": i, "messages": [good_chat_message]}),
        "session id with a lone surrogate": surrogate_text.map(
            lambda i: {"id": i, "messages": [good_chat_message]}
        ),
        "no messages": st.one_of(
            st.just([]), st.lists(not_object, min_size=1, max_size=2), not_object
        ).map(lambda m: {"id": session_id, "messages": m}),
        "bad last message": st.builds(
            lambda earlier, last, trigger: {
                "id": session_id,
                "messages": [*earlier, last],
                "trigger": trigger,
            },
            st.lists(st.just(good_chat_message), max_size=2),
            bad_last,
            st.sampled_from(["submit-message", "regenerate-message"]),
        ),
        # Regenerating one of the session's own messages rewinds the session: a bad
        # message must be refused before that, with the session as it was.
        "regenerate with a bad message": st.builds(
            lambda message_id, parts: {
                "id": session_id,
                "trigger": "regenerate-message",
                "messages": [{"id": message_id, "role": "user", "parts": parts}],
            },
            st.sampled_from(message_ids),
            jsonable(bad_parts),
        ),
        "bad trigger": st.one_of(
            st.text(max_size=12).filter(
                lambda t: t not in ("submit-message", "regenerate-message")
            ),
            not_text.filter(lambda v: v is not None and not isinstance(v, str)),
        ).map(lambda t: {"id": session_id, "messages": [good_chat_message], "trigger": t}),
        "missing field": st.sampled_from([{"messages": [good_chat_message]}, {"id": session_id}]),
    }
    routes = [
        ("POST", "/v1/messages", send_bodies, {"message": "hi"}),
        ("POST", "/v1/approvals", approval_bodies, {"approval_id": "x", "approved": True}),
        ("PATCH", "/v1", patch_bodies, {}),
        ("POST", "/api/chat", chat_bodies, {"id": session_id, "messages": [good_chat_message]}),
    ]
    families: dict[str, st.SearchStrategy[Call]] = {}
    for method, path, bodies, valid in routes:
        route = f"{method} {path}"
        to = (st.just(method), st.just(path))
        for name, strategy in bodies.items():
            families[f"{route}: {name}"] = st.builds(Call, *to, body=strategy)
        families |= {
            # JSON, but not an object, or an object of fields the route does not have.
            f"{route}: not an object": st.builds(
                Call, *to, body=st.one_of(not_object, junk_object)
            ),
            # Bytes that are (mostly) not JSON at all.
            f"{route}: not JSON": st.builds(Call, *to, raw=st.binary(max_size=48)),
            # A valid body, but not declared as JSON: bodies are JSON only.
            f"{route}: wrong content type": st.builds(
                Call,
                *to,
                body=st.just(valid),
                content_type=st.sampled_from(WRONG_CONTENT_TYPES),
                expect=st.just(422),
            ),
            # A valid body over the size limit, with a content-length or chunked.
            f"{route}: too large": st.builds(
                Call,
                *to,
                oversize=st.integers(BODY_LIMIT + 1, BODY_LIMIT + 8192),
                streamed=st.booleans(),
                expect=st.just(413),
            ),
        }
    bad_cursors = st.one_of(
        st.sampled_from(
            [
                *("²", "١٢٣", "٣-٤", "①", "1-", "-1", "1-2-3", " 1", "+1", "0x10", "1.5"),
                f"{U64_MAX}-{U64_MAX}",  # nothing comes after the greatest id
                "0" * 21,
            ]
        ),
        st.integers(U64_MAX + 1, 2**80).map(str),
        st.integers(U64_MAX + 1, 2**80).map(lambda n: f"1-{n}"),
        st.text(min_size=1, max_size=12).filter(lambda s: not ENTRY_ID.fullmatch(s)),
    )
    families["GET /v1/stream: bad cursor"] = st.builds(
        lambda cursor, header: Call(
            "GET",
            "/v1/stream",
            content_type=None,
            after=cursor,
            cursor_in_header=header and _header_safe(cursor),
            expect=422,
        ),
        bad_cursors,
        st.booleans(),
    )
    return families


def _header_safe(value: str) -> bool:
    """Sendable unchanged as a header value (printable ASCII, no edge whitespace)."""
    return value == value.strip() and all(" " <= c <= "~" for c in value)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


async def test_malformed_gateway_requests_get_4xx_json_errors(
    gateway: Gateway, unique_id: str
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    auth = gateway.headers()
    session: Session = gateway.client.agent("tooling").session(f"acme:{unique_id}")
    async with httpx.AsyncClient(timeout=20) as http:
        for text in ("first", "second"):
            sent = await http.post(f"{base}/messages", json={"message": text}, headers=auth)
            assert sent.status_code == 202, sent.text
            await wait_idle(session)
        before = await session.history()
        assert len(before) == 4

        async def check(call: Call) -> None:
            url = (
                base + call.path.removeprefix("/v1")
                if call.path.startswith("/v1")
                else (gateway.url + call.path)
            )
            headers = dict(auth)
            if call.content_type is not None:
                headers["content-type"] = call.content_type
            params: dict[str, str] = {}
            if call.after is not None:
                if call.cursor_in_header:
                    headers["last-event-id"] = call.after
                else:
                    params["after"] = call.after
            content: Any = call.raw
            if call.body is not None:
                content = json.dumps(call.body).encode()
            if call.oversize:
                padding = "x" * (call.oversize - len('{"message":""}'))
                content = json.dumps({"message": padding}).encode()
                content = _chunks(content) if call.streamed else content
            response = await asyncio.wait_for(
                http.request(call.method, url, content=content, headers=headers, params=params),
                15,
            )
            status = response.status_code
            assert 400 <= status < 500, (status, response.text[:500])
            if call.expect is not None:
                assert status == call.expect, (status, response.text[:500])
            assert response.headers["content-type"].startswith("application/json")
            error = response.json()["error"]
            assert (status, error["code"]) in DOCUMENTED_ERRORS, (status, error)
            assert isinstance(error["message"], str) and error["message"].strip(), error
            # A rejected request leaves the session as it was.
            assert await session.history() == before

        ids = [m.id for m in before]
        await check_families(gateway_calls(unique_id, ids), check, max_examples=15)

        await assert_workflow_healthy(gateway.client.temporal, session.workflow_id)
        assert await session.history() == before
        sent = await http.post(f"{base}/messages", json={"message": "still works"}, headers=auth)
        assert sent.status_code == 202, sent.text
        await wait_idle(session)
        reply = (await session.history())[-1]
        assert reply.id == sent.json()["assistantMessageId"]
        assert reply.text() == tooling_reply(3, "still works")
        await assert_workflow_healthy(gateway.client.temporal, session.workflow_id)


async def wait_idle(session: Session) -> None:
    for _ in range(400):
        if not (await session.info()).busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session did not become idle")
