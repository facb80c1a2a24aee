"""A small SSE client for tests: frames with their ids, as a browser's EventSource sees them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    id: str | None
    data: str | None
    comment: str | None = None

    @property
    def chunk(self) -> dict[str, Any]:
        assert self.data is not None and self.data != "[DONE]"
        value: dict[str, Any] = json.loads(self.data)
        return value


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Frame(event_id, "\n".join(data))
            event_id, data = None, []
        elif line.startswith(":"):
            yield Frame(None, None, comment=line[1:].strip())
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
