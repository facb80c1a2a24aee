"""JSON nested too deep never reaches a session: a message's metadata or data part,
context, or a body 198 or 1000 levels deep is refused at once, naming the limit, over
HTTP and from Python, and the session goes on working.

Before the rule, metadata 200 levels deep was accepted and its message silently
dropped (Temporal could not decode the signal), and 198 levels wedged the session's
history (its query answer could not be decoded): Temporal's decoder stops at 200.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sessionflow.client import SessionClient
from sessionflow.contract import TurnStatus
from sessionflow.errors import InvalidInput, JsonTooDeep
from sessionflow.json_limits import MAX_JSON_DEPTH, MAX_TOOL_INPUT_BYTES, deeper_than, json_problem
from tests.agents import tool_agent
from tests.conftest import Gateway, StartWorker

DEPTHS = (198, 1000)


def nested(depth: int) -> Any:
    """A value `depth` levels deep: objects and arrays in turn."""
    value: Any = "bottom"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def deep_body(depth: int) -> str:
    """`{"message": {..., "metadata": <depth levels>}}` as text: json.dumps itself
    cannot write what Python cannot nest."""
    return (
        '{"message": {"role": "user", "parts": [{"type": "text", "text": "hi"}], '
        '"metadata": ' + '{"k": ' * depth + "1" + "}" * depth + "}}"
    )


def attacks(depth: int) -> dict[str, dict[str, Any]]:
    """What a caller could nest `depth` levels deep: send()'s keyword arguments."""
    text = {"type": "text", "text": "hi"}
    return {
        "metadata": {"input": {"role": "user", "parts": [text], "metadata": nested(depth)}},
        "data part": {"input": [text, {"type": "data-deep", "data": nested(depth)}]},
        "context": {"input": "hi", "context": {"deep": nested(depth)}},
        "last part": {
            "input": "hi",
            "interrupt_if_streaming": {"last_part": {"index": 0, "part": nested(depth)}},
        },
    }


def test_the_rule_counts_levels_and_stops_at_the_limit() -> None:
    assert not deeper_than(nested(MAX_JSON_DEPTH))
    assert deeper_than(nested(MAX_JSON_DEPTH + 1))
    # A tool call's input as a hostile model returns it: a reason naming the limit.
    problem = json_problem(nested(198), "the tool input")
    assert problem is not None and "the tool input" in problem and str(MAX_JSON_DEPTH) in problem
    assert json_problem({"command": "ls"}, max_bytes=MAX_TOOL_INPUT_BYTES) is None
    # Deeper than Python can nest, or containing itself: judged, never a RecursionError.
    assert json_problem(nested(100_000)) is not None
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert json_problem(loop) is not None
    big = json_problem({"x": "a" * 2000}, "the tool input", max_bytes=1000)
    assert big is not None and "1000" in big
    assert json_problem({"x": object()}, max_bytes=1000) is not None


async def assert_works(client: SessionClient, session_id: str, turns: int) -> None:
    """Another message is answered, and history reads every turn."""
    session = client.agent("tooling").session(session_id)
    result = await session.send("still there?")
    assert (await result.outcome).status is TurnStatus.FINISHED
    history = await session.history()
    assert [m.role.value for m in history].count("user") == turns


async def test_python_callers_get_a_clear_error_naming_the_limit(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    session = client.agent("tooling").session(unique_id)
    assert (await (await session.send("hello")).outcome).status is TurnStatus.FINISHED
    for depth in DEPTHS:
        for what, kwargs in attacks(depth).items():
            with pytest.raises(JsonTooDeep, match=f"at most {MAX_JSON_DEPTH} levels") as caught:
                await session.send(**kwargs)
            assert isinstance(caught.value, InvalidInput), what
    # Just within the rule: accepted, and the session decodes it everywhere.
    text = {"type": "text", "text": "deep but fine"}
    metadata = {"m": nested(MAX_JSON_DEPTH - 2)}  # the message around it is one more
    message = {"role": "user", "parts": [text], "metadata": metadata}
    assert (await (await session.send(message)).outcome).status is TurnStatus.FINISHED
    assert (await session.history())[-2].metadata == metadata
    await assert_works(client, unique_id, turns=3)


@pytest.mark.parametrize("depth", DEPTHS)
async def test_http_callers_get_422_naming_the_limit(
    gateway: Gateway, unique_id: str, depth: int
) -> None:
    base = f"{gateway.url}/v1/sessions/{unique_id}"
    headers = {**gateway.headers(), "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.post(f"{base}/messages", json={"message": "hello"}, headers=headers)
        assert first.status_code == 202, first.text
        answer = first.json()["assistantMessageId"]
        done = await http.get(f"{base}/messages/{answer}/outcome?wait=30", headers=headers)
        assert done.json()["status"] == "finished", done.text

        bodies = {
            "metadata": ("messages", deep_body(depth)),
            "context": ("messages", '{"message": "hi", "context": ' + deep_body(depth) + "}"),
            "chat": (
                "chat",
                '{"id": "' + unique_id + '", "messages": [{"id": "u1", "role": "user", '
                '"parts": [{"type": "data-x", "data": ' + "[" * depth + "]" * depth + "}, "
                '{"type": "text", "text": "hi"}]}]}',
            ),
        }
        for what, (route, body) in bodies.items():
            url = f"{gateway.url}/api/chat" if route == "chat" else f"{base}/messages"
            refused = await http.post(url, content=body, headers=headers)
            assert refused.status_code == 422, (what, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "json_too_deep", what
            assert f"at most {MAX_JSON_DEPTH} levels" in error["message"], what

        # Within the body's limit but too deep for the message: the client names it.
        body = deep_body(MAX_JSON_DEPTH)  # metadata 64 deep: the message is 65
        refused = await http.post(f"{base}/messages", content=body, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "json_too_deep"
        assert "the message" in refused.json()["error"]["message"]

        # The session goes on: a message is answered, history reads all of it.
        sent = await http.post(f"{base}/messages", json={"message": "again"}, headers=headers)
        assert sent.status_code == 202, sent.text
        answer = sent.json()["assistantMessageId"]
        done = await http.get(f"{base}/messages/{answer}/outcome?wait=30", headers=headers)
        assert done.json()["status"] == "finished", done.text
        history = await http.get(f"{base}/history", headers=headers)
        assert history.status_code == 200, history.text
        assert [m["role"] for m in history.json()["messages"]].count("user") == 2
