"""Transient `data-status` chunks: what the session is doing, for a UI to show."""

from __future__ import annotations

from streams.chunks import DataChunk


def status_chunk(status: str, **details: object) -> DataChunk:
    """A `data-status` chunk that a UI shows but does not keep in the message.

    Statuses: sandbox-setup, thinking, running-tool, needs-approval, idle.
    """
    return DataChunk(type="data-status", data={"status": status, **details}, transient=True)
