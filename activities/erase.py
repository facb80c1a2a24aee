"""The end of a session: its stream ends and its Redis keys go (close, idle TTL), and
when it is deleted its payload store objects go too (`workflows.ending`)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from temporalio import activity

from sessionflow.activities.failures import to_application_error
from sessionflow.contract import ActivityName, EndStreamParams, EraseSessionParams, SessionEnd
from sessionflow.errors import SessionflowError
from sessionflow.storage.transcripts import TranscriptStore
from sessionflow.streams.erasure import end_stream
from sessionflow.streams.publisher import StreamPublisher

log = structlog.get_logger(__name__)


@dataclass
class EraseActivities:
    publisher: StreamPublisher
    # None when the worker has no payload store (its sessions stored nothing there).
    transcripts: TranscriptStore | None

    @activity.defn(name=ActivityName.FORGET_STREAM)
    async def forget_stream(self, params: EndStreamParams) -> None:
        """The stream's last chunk, then every Redis key of the session deleted."""
        removed = await end_stream(self.publisher, params.workflow_id, params.reason.value)
        log.info("session stream ended", workflow_id=params.workflow_id, keys=removed)

    @activity.defn(name=ActivityName.ERASE_SESSION)
    async def erase_session(self, params: EraseSessionParams) -> None:
        """Every Redis key and every payload store object of the session deleted."""
        removed = await end_stream(self.publisher, params.workflow_id, SessionEnd.DELETED.value)
        kept: list[str] = []
        if self.transcripts is not None:
            try:
                kept = await self.transcripts.erase_session(params.workflow_id)
            except SessionflowError as err:
                raise to_application_error(err) from err
        log.info("session erased", workflow_id=params.workflow_id, keys=removed)
        if kept:
            log.warning(
                "payloads of the deleted session kept by payload store drivers (held by "
                "other sessions, or a driver without session namespaces)",
                workflow_id=params.workflow_id,
                drivers=kept,
            )
