"""The payload store: where payloads too large for Temporal's history go, by reference.

Temporal refuses payloads over 2 MiB. Every payload of at least
`Settings.payload_threshold` bytes (256 KiB by default) that a client or worker encodes
(activity inputs and results, signals, updates' and queries' answers, continue-as-new
input, failures' details) is stored here by the Temporal SDK's `ExternalStorage`, and
history records only a reference (driver name, and where and what hash). Every client
and worker of a namespace must use the same store.

- `file://<dir>` (`FileStorageDriver`): one machine, the local stack; the default is
  `<data dir>/payloads`.
- `s3://<bucket>[/<prefix>]` (the SDK's `S3StorageDriver`, `PrefixedS3StorageDriver`):
  S3 or any S3-compatible server with conditional writes (`AWS_ENDPOINT_URL`), as
  durable as Temporal's own history. Objects are never rewritten; a session's are
  deleted with it (`storage.s3_namespaces`). Objects of no session, and those stored
  before namespaces, are never deleted by Sessionflow: a bucket lifecycle rule, if
  any, must keep them at least as long as a session's run can stay open (an idle
  session is replayed from its history, references included, when a worker needs it
  again) plus the namespace's retention.

Transcripts live here too (`sessionflow.storage.transcripts`): a session's committed
messages, as immutable segments that its history refers to, under the same rules.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.converter import ExternalStorage

from sessionflow.config import Settings, parse_payload_threshold
from sessionflow.logs import remember_secret
from sessionflow.storage.files import FILE_DRIVER_NAME, FileStorageDriver, PayloadMissing
from sessionflow.storage.s3 import PrefixedS3StorageDriver, s3_driver
from sessionflow.storage.transcripts import TranscriptStore

__all__ = [
    "FILE_DRIVER_NAME",
    "FileStorageDriver",
    "PayloadMissing",
    "PrefixedS3StorageDriver",
    "TranscriptStore",
    "close_external_storage",
    "external_storage_from_settings",
    "transcript_store",
]


def external_storage_from_settings(settings: Settings) -> ExternalStorage:
    """The SDK's `ExternalStorage` for `settings.payload_store` and
    `settings.payload_threshold`; `InvalidInput` with one line when either is bad."""
    store = settings.payloads
    threshold = parse_payload_threshold(settings.payload_threshold)
    if store.kind == "file":
        return ExternalStorage(
            drivers=[FileStorageDriver(store.path)], payload_size_threshold=threshold
        )
    remember_secret(settings.aws_secret_access_key, settings.aws_session_token)
    return ExternalStorage(drivers=[s3_driver(settings, store)], payload_size_threshold=threshold)


async def close_external_storage(storage: ExternalStorage | None) -> None:
    """Close the connections the store's drivers opened in this event loop (an S3
    client); they open again if used later."""
    for driver in storage.drivers if storage else ():
        if isinstance(driver, PrefixedS3StorageDriver):
            await driver.aclose()


def transcript_store(client: Client) -> TranscriptStore | None:
    """The transcript store over `client`'s payload store, or None when the client was
    connected without one (its sessions then keep every message in history)."""
    storage = client.data_converter.external_storage
    if storage is None or not storage.drivers:
        return None
    return TranscriptStore(storage.drivers)
