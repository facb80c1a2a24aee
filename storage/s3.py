"""Payloads in S3 or any S3-compatible server, through the Temporal SDK's own driver
(`temporalio.contrib.aws.s3driver`) and its aioboto3 adapter (the `s3` extra:
`pip install 'sessionflow[s3]'`).

A payload stored for a session's workflow goes under the session's namespace,
`<prefix>/sessions/<sha256 of the workflow id>/sha256/<2 hex>/<digest>`, the file
store's layout (`storage.namespaces`), so deleting the session erases it
(`erase_session`; holds and the lock that keeps forks whole: `storage.s3_namespaces`).
Payloads of no session keep the SDK's content-addressed layout (`<prefix>/v0/ns/
<namespace>/.../d/sha256/<digest>`), which is also where every payload stored before
namespaces is: each reference in a history names its bucket and whole key, so those
keep resolving, and changing the prefix later leaves earlier references readable too.
Objects outside namespaces (and the old ones) are never deleted by Sessionflow: a
bucket lifecycle rule, if any, must keep them at least as long as a session's run can
stay open (its history, references included, is replayed whenever a worker picks it
up again) plus the namespace's retention of closed histories.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import StorageDriverClaim, StorageDriverStoreContext

from sessionflow.config import PayloadStore, Settings
from sessionflow.errors import InvalidInput
from sessionflow.storage.namespaces import NAMESPACE_CLAIM, namespace_of, session_namespace
from sessionflow.storage.s3_namespaces import HASH, S3Namespaces

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3.client import S3Client

# DeleteObjects takes at most this many keys.
DELETE_BATCH = 1000
# A conditional write lost: 412, or 409 when another conditional write raced it (AWS).
_CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_MISSING = ("NoSuchKey", "404", "NotFound")


class LazyS3Client(S3StorageDriverClient):
    """The SDK's aioboto3 adapter over one S3 client per event loop, opened at first use
    (an aiobotocore client belongs to the loop that opened it) and kept until `aclose`;
    and the few operations of its own that session namespaces need (listing, batch
    deletes, conditional writes for the lock)."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint_url = settings.s3_endpoint_url
        self.region = settings.s3_region
        self._settings = settings
        self._open: dict[
            asyncio.AbstractEventLoop, tuple[AsyncExitStack, S3Client, S3StorageDriverClient]
        ]
        self._open = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def describe(self) -> Mapping[str, str]:
        return {
            "endpoint": self.endpoint_url or "AWS",
            "client_region": self.region or "from boto's configuration",
        }

    async def _opened(self) -> tuple[AsyncExitStack, S3Client, S3StorageDriverClient]:
        loop = asyncio.get_running_loop()
        for stale in [other for other in self._open if other.is_closed()]:
            del self._open[stale]
            self._opening.pop(stale, None)
        if (found := self._open.get(loop)) is not None:
            return found
        async with self._opening.setdefault(loop, asyncio.Lock()):
            if (found := self._open.get(loop)) is None:
                stack = AsyncExitStack()
                s3 = await stack.enter_async_context(self._new_client())
                found = (stack, s3, _aioboto3_adapter(s3))
                self._open[loop] = found
        return found

    async def _client(self) -> S3StorageDriverClient:
        return (await self._opened())[2]

    async def _s3(self) -> S3Client:
        return (await self._opened())[1]

    def _new_client(self) -> ClientCreatorContext[S3Client]:
        import aioboto3  # the `s3` extra; checked by `s3_driver`

        settings = self._settings
        session = aioboto3.Session(
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key,
            aws_session_token=settings.aws_session_token,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url)

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await (await self._client()).put_object(bucket=bucket, key=key, data=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        return await (await self._client()).object_exists(bucket=bucket, key=key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        return await (await self._client()).get_object(bucket=bucket, key=key)

    # -- for session namespaces (`storage.s3_namespaces`) ------------------------------

    async def put_small(self, *, bucket: str, key: str, data: bytes) -> None:
        """One PutObject (a marker: no multipart upload)."""
        await (await self._s3()).put_object(Bucket=bucket, Key=key, Body=data)

    async def list_keys(self, *, bucket: str, prefix: str) -> list[str]:
        s3 = await self._s3()
        keys: list[str] = []
        token: str | None = None
        while True:
            if token is None:
                page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
            else:
                page = await s3.list_objects_v2(
                    Bucket=bucket, Prefix=prefix, ContinuationToken=token
                )
            keys.extend(item["Key"] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys

    async def delete_keys(self, *, bucket: str, keys: Sequence[str]) -> None:
        s3 = await self._s3()
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            if len(batch) == 1:
                await s3.delete_object(Bucket=bucket, Key=batch[0])
                continue
            answer = await s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            if errors := answer.get("Errors"):
                first = errors[0]
                raise RuntimeError(
                    f"S3 did not delete {len(errors)} of {len(batch)} objects of "
                    f"s3://{bucket}: {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message')} (does the store's role have s3:DeleteObject?)"
                )

    async def put_if_absent(self, *, bucket: str, key: str, data: bytes) -> str | None:
        try:
            answer = await (await self._s3()).put_object(
                Bucket=bucket, Key=key, Body=data, IfNoneMatch="*"
            )
        except Exception as err:
            if _code(err) in _CONDITION_FAILED:
                return None
            raise
        return answer["ETag"]

    async def put_if_match(self, *, bucket: str, key: str, data: bytes, etag: str) -> str | None:
        try:
            answer = await (await self._s3()).put_object(
                Bucket=bucket, Key=key, Body=data, IfMatch=etag
            )
        except Exception as err:
            if _code(err) in _CONDITION_FAILED + _MISSING:
                return None
            raise
        return answer["ETag"]

    async def etag_of(self, *, bucket: str, key: str) -> str | None:
        try:
            answer = await (await self._s3()).head_object(Bucket=bucket, Key=key)
        except Exception as err:
            if _code(err) in _MISSING:
                return None
            raise
        return answer["ETag"]

    async def delete_if_match(self, *, bucket: str, key: str, etag: str) -> bool:
        try:
            await (await self._s3()).delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        except Exception as err:
            if _code(err) in _CONDITION_FAILED + _MISSING:
                return False
            raise
        return True

    async def aclose(self) -> None:
        """Close this loop's client (a later call opens a new one)."""
        found = self._open.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()


def _code(err: Exception) -> str | None:
    """The S3 error code of a botocore `ClientError` (None for any other error);
    botocore comes with the `s3` extra, so it is not imported here."""
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _aioboto3_adapter(s3: S3Client) -> S3StorageDriverClient:
    from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

    return new_aioboto3_client(s3)


class _UnderPrefix(S3StorageDriverClient):
    """Writes and checks keys under `prefix`; reads keys as given, since the claims the
    driver below hands out carry the whole key."""

    def __init__(self, inner: S3StorageDriverClient, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def describe(self) -> Mapping[str, str]:
        return {**self.inner.describe(), "key_prefix": self.prefix}

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await self.inner.put_object(bucket=bucket, key=self.prefix + key, data=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        return await self.inner.object_exists(bucket=bucket, key=self.prefix + key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        return await self.inner.get_object(bucket=bucket, key=key)


class PrefixedS3StorageDriver(S3StorageDriver):
    """The SDK's S3 driver with every key under a prefix, and a session's payloads under
    its namespace (`<prefix>/sessions/<ns>/...`, erased with it). Its references are
    the SDK driver's own (bucket, whole key, hash; a session's also name its namespace),
    so any S3 driver of the same name reads them."""

    def __init__(self, client: LazyS3Client, bucket: str, prefix: str = "") -> None:
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = client
        self.bucket = bucket
        self.namespaces = S3Namespaces(client, bucket, self.prefix)
        super().__init__(
            client=_UnderPrefix(client, self.prefix) if self.prefix else client, bucket=bucket
        )

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        namespace = namespace_of(context)
        if namespace is not None:
            return await self._store_in(namespace, payloads)
        claims = await super().store(context, payloads)
        if not self.prefix:
            return claims
        return [
            StorageDriverClaim(
                claim_data={**claim.claim_data, "key": self.prefix + claim.claim_data["key"]}
            )
            for claim in claims
        ]

    async def _store_in(
        self, namespace: str, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        blobs = [payload.SerializeToString() for payload in payloads]
        for blob in blobs:
            if len(blob) > self._max_payload_size:
                raise ValueError(
                    f"Payload size {len(blob)} bytes exceeds the configured "
                    f"max_payload_size of {self._max_payload_size} bytes"
                )
        uploads = asyncio.gather(*(self._upload(namespace, blob) for blob in blobs))
        _, claims = await asyncio.gather(self.namespaces.revive(namespace), uploads)
        return claims

    async def _upload(self, namespace: str, blob: bytes) -> StorageDriverClaim:
        digest = hashlib.sha256(blob).hexdigest()
        key = self.namespaces.payload_key(namespace, digest)
        try:
            if not await self.client.object_exists(bucket=self.bucket, key=key):
                await self.client.put_object(bucket=self.bucket, key=key, data=blob)
        except Exception as err:
            raise RuntimeError(
                f"S3 payload store could not store [bucket={self.bucket}, key={key}, "
                f"endpoint={self.client.endpoint_url or 'AWS'}]"
            ) from err
        return StorageDriverClaim(
            claim_data={
                "bucket": self.bucket,
                "key": key,
                "hash_algorithm": HASH,
                "hash_value": digest,
                NAMESPACE_CLAIM: namespace,
            }
        )

    async def erase_session(self, workflow_id: str) -> bool:
        """Delete every object of the session's namespace; when other sessions hold it,
        mark it erased instead and return False (`storage.s3_namespaces`)."""
        return await self.namespaces.erase(session_namespace(workflow_id))

    async def hold(
        self,
        workflow_id: str,
        fork_workflow_id: str,
        *,
        keep: Sequence[StorageDriverClaim] = (),
    ) -> None:
        """Hold the session's namespace, and every namespace it borrows, for the fork;
        `SessionNotFound` if an object of `keep` is gone (`storage.namespaces`)."""
        await self.namespaces.hold(
            session_namespace(workflow_id),
            session_namespace(fork_workflow_id),
            [c.claim_data["key"] for c in keep if c.claim_data.get("bucket") == self.bucket],
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def s3_driver(settings: Settings, store: PayloadStore) -> PrefixedS3StorageDriver:
    """The driver of an `s3://bucket/prefix` store; `InvalidInput` without aioboto3 or
    with an endpoint that is not a URL."""
    endpoint = settings.s3_endpoint_url
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise InvalidInput(
            f"AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) must be an http:// or https:// URL, "
            f"got {endpoint!r}"
        )
    try:
        import aioboto3  # noqa: F401
    except ImportError:
        raise InvalidInput(
            f"SESSIONFLOW_PAYLOAD_STORE={store.url} needs aioboto3: pip install 'sessionflow[s3]'"
        ) from None
    return PrefixedS3StorageDriver(LazyS3Client(settings), store.bucket, store.prefix)
