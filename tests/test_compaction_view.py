"""What a compaction sends (`sessionflow.compaction`): byte-stable between compactions,
every proposal further than the last, and nothing for a message no compaction can fit."""

from __future__ import annotations

import json

from sessionflow.compaction import (
    CLEARED_TEXT,
    Compaction,
    CompactionRecord,
    exclude_turn,
    message_tokens,
    propose,
    sent_messages,
)
from sessionflow.messages import Message, Role, StepStartPart, TextPart, ToolPart, ToolState
from sessionflow.providers.anthropic import to_anthropic_messages
from sessionflow.providers.openai import to_chat_messages


def turn(n: int, output: int = 4_000, ask: int = 40) -> list[Message]:
    return [
        Message(id=f"u{n}", role=Role.USER, parts=[TextPart(text=f"ask {n} " + "a" * ask)]),
        Message(
            id=f"a{n}",
            role=Role.ASSISTANT,
            parts=[
                StepStartPart(),
                ToolPart(
                    tool_call_id=f"c{n}",
                    tool_name="dump",
                    input={"n": n},
                    state=ToolState.OUTPUT_AVAILABLE,
                    output="o" * output,
                ),
                StepStartPart(),
                TextPart(text=f"done {n}"),
            ],
        ),
    ]


def conversation(turns: int, **sizes: int) -> list[Message]:
    return [m for n in range(turns) for m in turn(n, **sizes)]


def test_under_one_record_each_request_begins_with_the_last_byte_for_byte() -> None:
    record = CompactionRecord(stage="summary", made_at=6, summarized=4, summary="s", cleared=3)
    short, longer = conversation(6), conversation(8)
    for convert in (to_anthropic_messages, to_chat_messages):
        before = [json.dumps(m) for m in convert(sent_messages(short, record))]
        after = [json.dumps(m) for m in convert(sent_messages(longer, record))]
        assert after[: len(before)] == before
    sent = sent_messages(longer, record)
    assert sent[0].text().endswith("s") and sent[1].id == "u2"
    outputs = [p.output for m in sent for p in m.parts if isinstance(p, ToolPart)]
    # Tool results 1-3 are cleared (0 and 1 are summarised away), 4-8 sent whole.
    assert outputs[0] == CLEARED_TEXT and outputs[1] != CLEARED_TEXT
    assert len(outputs) == 6


def test_each_proposal_goes_further_and_clearing_comes_first() -> None:
    options = Compaction(keep_tool_results=1)
    messages = conversation(10)
    total = sum(message_tokens(messages))
    window = int(total / 0.9)
    first = propose(messages, None, fixed_tokens=0, tokens=total, window=window, options=options)
    assert first is not None and first.stage == "clear" and first.cleared == 9
    # Long messages: clearing is not enough, old turns are summarised.
    talk = conversation(10, ask=8_000)
    total = sum(message_tokens(talk))
    window = int(total / 0.9)
    second = propose(talk, None, fixed_tokens=0, tokens=total, window=window, options=options)
    assert second is not None and second.stage == "summary"
    assert talk[second.summarized].role is Role.USER and second.summarized > 0
    done = second.model_copy(update={"summary": "s"})
    third = propose(talk, done, fixed_tokens=0, tokens=total, window=window, options=options)
    assert third is None or third.summarized > done.summarized or third.cleared > done.cleared


def test_a_message_no_compaction_can_fit_gets_no_summary_and_its_turn_is_left_out() -> None:
    messages = [*conversation(2), *turn(2, ask=100_000)]
    tokens = sum(message_tokens(messages))
    proposal = propose(
        messages, None, fixed_tokens=0, tokens=tokens, window=10_000, options=Compaction()
    )
    assert proposal is None or proposal.stage == "clear"
    exclude_turn(messages[-1])
    assert [m.id for m in sent_messages(messages, None)] == ["u0", "a0", "u1", "a1"]
