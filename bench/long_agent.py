"""An agent whose transcript grows as fast as asked: for the long-session benchmark and
test.

Each user message says how many tool calls to make and how large each output is
(`calls=10 size=100000`); the model (`filler/...`) asks for them in one step and
answers in the next. Outputs are random hex, so they neither compress away nor repeat.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from sessionflow.agents.definition import agent
from sessionflow.agents.tools import ToolContext, tool
from sessionflow.contract import FinishReason
from sessionflow.messages import Role, Usage
from sessionflow.providers.base import (
    ModelEvent,
    ModelRequest,
    StepFinished,
    TextDelta,
    ToolCallReady,
    ToolCallStart,
)

ORDER = re.compile(r"calls=(\d+) size=(\d+)")


class Dump(BaseModel):
    turn: int
    n: int
    size: int


async def _dump(args: Dump, ctx: ToolContext) -> str:
    del ctx
    rng = random.Random(args.turn * 100_000 + args.n)
    return rng.randbytes(args.size // 2).hex()


dump_tool = tool("dump", "Print `size` characters", input_schema=Dump, execute=_dump)


class FillerProvider:
    name = "filler"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        users = [m for m in request.messages if m.role is Role.USER]
        current = request.messages[-1]
        answering = current.role is Role.ASSISTANT and current.step_count() > 0
        if answering:
            yield TextDelta(f"Done: {len(request.messages)} messages.")
            yield StepFinished(reason=FinishReason.STOP, usage=Usage(output_tokens=4))
            return
        found = ORDER.search(users[-1].text() if users else "")
        calls, size = (int(found[1]), int(found[2])) if found else (0, 0)
        turn = len(users)
        for n in range(calls):
            call_id = f"call_{turn}_{n}"
            arguments: dict[str, Any] = {"turn": turn, "n": n, "size": size}
            yield ToolCallStart(call_id, "dump")
            yield ToolCallReady(call_id, "dump", arguments)
        if not calls:
            yield TextDelta("Nothing to do.")
        yield StepFinished(
            reason=FinishReason.TOOL_CALLS if calls else FinishReason.STOP,
            usage=Usage(output_tokens=calls),
        )


def long_agent() -> Any:
    return agent("long", model="filler/any", tools=[dump_tool])


def expected_output(turn: int, n: int, size: int) -> str:
    return random.Random(turn * 100_000 + n).randbytes(size // 2).hex()
