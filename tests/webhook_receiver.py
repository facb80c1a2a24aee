"""A webhook receiver on loopback for the tests: records every request it gets (headers
and body), answers 200, or 503 to the first N requests of each event id, and can be
down (not listening) and come back on the same port."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from sessionflow.cli.localstack import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    # Answer 503 to the first `fail_first` requests of each event id.
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sessionflow"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def delivered(self) -> list[Received]:
        """The requests answered 200, one per event id (the first that succeeded)."""
        return [r for r in self.requests if r.headers.get("x-answered") == "200"]

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        """Wait until `count` requests were answered 200."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.delivered()) >= count)
        return self.delivered()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            event_id = headers.get("sessionflow-event-id", "")
            seen = sum(
                1 for r in self.requests if r.headers.get("sessionflow-event-id") == event_id
            )
            status = 503 if seen < self.fail_first else 200
            headers["x-answered"] = str(status)
            async with self._arrived:
                self.requests.append(Received(headers=headers, body=body))
                self._arrived.notify_all()
            reason = "OK" if status == 200 else "Service Unavailable"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
