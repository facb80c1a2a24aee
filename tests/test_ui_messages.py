"""Messages as the AI SDK's `UIMessage` (sessionflow.ui_messages), and user messages
with the AI SDK's file and `data-*` parts (sessionflow.client.inputs).

Checked with the AI SDK itself (npm `ai`, installed into .cache/ai-sdk on first use):
its `validateUIMessages` accepts every part in every state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sessionflow.client.inputs import user_message
from sessionflow.errors import InvalidInput
from sessionflow.messages import (
    MAX_FILE_BYTES,
    DataPart,
    FilePart,
    Message,
    MessageStatus,
    ReasoningPart,
    Role,
    StepStartPart,
    TextPart,
    ToolApproval,
    ToolPart,
    ToolState,
)
from sessionflow.ui_messages import to_ui_message
from tests import test_ai_sdk_compat

HERE = Path(__file__).parent
# The fixture that installs the npm package `ai` (shared with tests/test_ai_sdk_compat.py).
ai_sdk = test_ai_sdk_compat.ai_sdk
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


async def node(script: Path, *args: str, stdin: Any) -> dict[str, Any]:
    """Run a node script (see `installed`) with `stdin` as JSON; its JSON output."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=script.parent,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(stdin).encode()), timeout=60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def installed(ai_sdk: Path, name: str) -> Path:
    """The script `tests/<name>`, copied beside the installed `ai` so it can import it."""
    script = ai_sdk.with_name(name)
    shutil.copyfile(HERE / name, script)
    shutil.copyfile(
        HERE / test_ai_sdk_compat.CHAT_STATE, script.with_name(test_ai_sdk_compat.CHAT_STATE)
    )
    return script


async def validate(ai_sdk: Path, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return await node(installed(ai_sdk, "ai_sdk_ui_messages.mjs"), stdin=messages)


# -- the conversion, state by state ----------------------------------------------------


def tool(state: ToolState, **fields: Any) -> ToolPart:
    return ToolPart(tool_call_id="call_1", tool_name="Bash", input={"command": "ls"}, state=state, **fields)  # fmt: skip


UI_TOOL = {"type": "tool-Bash", "toolCallId": "call_1", "input": {"command": "ls"}}
ASKED = ToolApproval(id="ap-1")
YES = ToolApproval(id="ap-1", approved=True)
NO = ToolApproval(id="ap-1", approved=False, reason="not now")
TOOL_CASES = [
    (tool(ToolState.INPUT_AVAILABLE), {"state": "input-available"}),
    (
        tool(ToolState.APPROVAL_REQUESTED, approval=ASKED),
        {"state": "approval-requested", "approval": {"id": "ap-1"}},
    ),
    (
        tool(ToolState.APPROVAL_REQUESTED, approval=YES),
        {"state": "approval-responded", "approval": {"id": "ap-1", "approved": True}},
    ),
    (
        tool(ToolState.OUTPUT_AVAILABLE, output={"stdout": "a\n"}, approval=YES),
        {
            "state": "output-available",
            "output": {"stdout": "a\n"},
            "approval": {"id": "ap-1", "approved": True},
        },
    ),
    (tool(ToolState.OUTPUT_AVAILABLE), {"state": "output-available", "output": None}),
    (
        tool(ToolState.OUTPUT_ERROR, error_text="boom"),
        {"state": "output-error", "errorText": "boom"},
    ),
    # Interrupted while waiting for the go-ahead: an error, the unanswered approval left out.
    (
        tool(ToolState.OUTPUT_ERROR, error_text="interrupted", approval=ASKED),
        {"state": "output-error", "errorText": "interrupted"},
    ),
    (
        tool(ToolState.OUTPUT_DENIED, error_text="The user denied this tool call.", approval=NO),
        {
            "state": "output-denied",
            "approval": {"id": "ap-1", "approved": False, "reason": "not now"},
        },
    ),
]


@pytest.mark.parametrize(("part", "expected"), TOOL_CASES, ids=[e["state"] for _, e in TOOL_CASES])
def test_tool_parts_take_the_ai_sdk_states_and_fields(
    part: ToolPart, expected: dict[str, Any]
) -> None:
    message = Message(id="m", role=Role.ASSISTANT, parts=[part])
    (ui,) = to_ui_message(message)["parts"]
    assert ui == {**UI_TOOL, **expected}


def test_a_streaming_message_marks_its_last_text_streaming_and_says_its_status() -> None:
    message = Message(
        id="m1",
        role=Role.ASSISTANT,
        status=MessageStatus.STREAMING,
        parts=[StepStartPart(), ReasoningPart(text="hm", signature="sig"), TextPart(text="Hel")],
    )
    assert to_ui_message(message) == {
        "id": "m1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "reasoning",
                "text": "hm",
                "state": "done",
                "providerMetadata": {"anthropic": {"signature": "sig"}},
            },
            {"type": "text", "text": "Hel", "state": "streaming"},
        ],
        "metadata": {"status": "streaming"},
    }


async def test_the_ai_sdk_validates_every_state_and_refuses_a_broken_part(ai_sdk: Path) -> None:
    user = Message(
        id="u1",
        role=Role.USER,
        metadata={"from": "test"},
        parts=[
            TextPart(text="look"),
            FilePart(media_type="image/png", url=data_url("image/png", PNG), filename="dot.png"),
            FilePart(media_type="application/pdf", url="https://example.com/a.pdf"),
            DataPart(type="data-ticket", id="t1", data={"n": 1}),
            DataPart(type="data-note", data=None),
        ],
    )
    failed = Message(
        id="a1",
        role=Role.ASSISTANT,
        status=MessageStatus.FAILED,
        metadata={"error": "the model is down"},
        parts=[StepStartPart(), ReasoningPart(text="r"), *(part for part, _ in TOOL_CASES)],
    )
    messages = [to_ui_message(user), to_ui_message(failed)]
    result = await validate(ai_sdk, messages)
    assert result["ok"], result["error"]
    assert result["messages"] == messages  # nothing dropped or rewritten
    # The check can fail: `null` where the AI SDK wants a field left out.
    broken = json.loads(json.dumps(messages))
    broken[1]["parts"][-1]["approval"]["reason"] = None
    assert not (await validate(ai_sdk, broken))["ok"]


# -- user messages with files and data parts ----------------------------------------------


def test_user_messages_take_ai_sdk_file_and_data_parts() -> None:
    url = data_url("image/png", PNG)
    message = user_message(
        {
            "id": "u-1",
            "role": "user",
            "parts": [
                {"type": "text", "text": "see", "state": "done"},
                {"type": "file", "mediaType": "image/png", "url": url, "filename": "dot.png"},
                {"type": "file", "media_type": "image/jpeg", "url": "https://example.com/a.jpg"},
                {"type": "data-ticket", "id": "t1", "data": {"priority": "high"}},
            ],
        }
    )
    assert message.parts == [
        TextPart(text="see"),
        FilePart(media_type="image/png", url=url, filename="dot.png"),
        FilePart(media_type="image/jpeg", url="https://example.com/a.jpg"),
        DataPart(type="data-ticket", id="t1", data={"priority": "high"}),
    ]
    # The same from Python objects, and as a bare parts list.
    assert (
        user_message(Message(id="u-2", role=Role.USER, parts=message.parts)).parts == message.parts
    )
    assert user_message([{"type": "file", "mediaType": "text/plain", "url": data_url("text/plain", b"hi")}]).file_parts()  # fmt: skip


TEXT = {"type": "text", "text": "x"}


def file(media_type: str, url: str, **more: str) -> dict[str, str]:
    return {"type": "file", "mediaType": media_type, "url": url, **more}


BIG = data_url("x/y", b"a" * (MAX_FILE_BYTES + 1))
FOUR_MIB = data_url("image/png", b"a" * (4 * 1024 * 1024))
REFUSED = {
    "file-too-large": (
        [TEXT, file("application/octet-stream", BIG, filename="big.bin")],
        f"file 1 ('big.bin') is {MAX_FILE_BYTES + 1} bytes; a file is at most "
        f"{MAX_FILE_BYTES} bytes (5 MiB) once decoded",
    ),
    "files-too-large": (
        [TEXT, *[file("image/png", FOUR_MIB)] * 3],
        "the message's files are 12582912 bytes together; at most 10485760 bytes (10 MiB)",
    ),
    "http": ([TEXT, file("image/png", "http://example.com/a.png")], "base64 data: URL"),
    "not-base64": ([TEXT, file("text/plain", "data:text/plain,hello")], "base64 data: URL"),
    "bad-base64": ([TEXT, file("image/png", "data:image/png;base64,@@@")], "not valid base64"),
    "no-media-type": ([TEXT, file("", data_url("image/png", PNG))], "mediaType must be"),
    "missing-media-type": ([TEXT, {"type": "file", "url": "https://a.b/c"}], "media_type"),
    "only-data": ([{"type": "data-ticket", "data": 1}], "only data parts"),
    "data-without-a-name": ([TEXT, {"type": "data-", "data": 1}], "pattern"),
    "unknown-type": ([TEXT, {"type": "video", "url": "x"}], "a part's type is one of"),
}


@pytest.mark.parametrize(("parts", "says"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_files_and_data_parts_are_refused_clearly(parts: list[Any], says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        user_message({"role": "user", "parts": parts})
    assert says in str(refused.value)


def test_a_file_of_exactly_the_limit_is_taken() -> None:
    url = data_url("application/pdf", b"%" * MAX_FILE_BYTES)
    message = user_message([{"type": "file", "mediaType": "application/pdf", "url": url}])
    assert message.file_parts()[0].url == url
