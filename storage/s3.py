"""Payloads in S3 or any S3-compatible server, through the Temporal SDK's own driver
(`temporalio.contrib.aws.s3driver`) and its aioboto3 adapter (the `s3` extra:
`pip install 'sessionflow[s3]'`).

Objects are immutable and content-addressed (`<prefix>/v0/ns/<namespace>/.../d/sha256/
<digest>`), and each reference in a history names its bucket and whole key, so changing
the prefix later leaves earlier references readable. Nothing here deletes an object: a
bucket lifecycle rule must keep objects at least as long as a session's run can stay
open (its history, references included, is replayed whenever a worker picks it up
again) plus the namespace's retention of closed histories.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import StorageDriverClaim, StorageDriverStoreContext

from sessionflow.config import PayloadStore, Settings
from sessionflow.errors import InvalidInput

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3.client import S3Client


class LazyS3Client(S3StorageDriverClient):
    """The SDK's aioboto3 adapter over one S3 client per event loop, opened at first use
    (an aiobotocore client belongs to the loop that opened it) and kept until `aclose`."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint_url = settings.s3_endpoint_url
        self.region = settings.s3_region
        self._settings = settings
        self._open: dict[asyncio.AbstractEventLoop, tuple[AsyncExitStack, S3StorageDriverClient]]
        self._open = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def describe(self) -> Mapping[str, str]:
        return {
            "endpoint": self.endpoint_url or "AWS",
            "client_region": self.region or "from boto's configuration",
        }

    async def _client(self) -> S3StorageDriverClient:
        loop = asyncio.get_running_loop()
        for stale in [other for other in self._open if other.is_closed()]:
            del self._open[stale]
            self._opening.pop(stale, None)
        if (found := self._open.get(loop)) is not None:
            return found[1]
        async with self._opening.setdefault(loop, asyncio.Lock()):
            if (found := self._open.get(loop)) is None:
                stack = AsyncExitStack()
                s3 = await stack.enter_async_context(self._new_client())
                found = (stack, _aioboto3_adapter(s3))
                self._open[loop] = found
        return found[1]

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

    async def aclose(self) -> None:
        """Close this loop's client (a later call opens a new one)."""
        found = self._open.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()


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
    """The SDK's S3 driver with every key under a prefix (`<prefix>/v0/...`); its
    references are the SDK driver's own (bucket, whole key, hash), so any S3 driver of
    the same name reads them."""

    def __init__(self, client: S3StorageDriverClient, bucket: str, prefix: str = "") -> None:
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = client
        super().__init__(
            client=_UnderPrefix(client, self.prefix) if self.prefix else client, bucket=bucket
        )

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = await super().store(context, payloads)
        if not self.prefix:
            return claims
        return [
            StorageDriverClaim(
                claim_data={**claim.claim_data, "key": self.prefix + claim.claim_data["key"]}
            )
            for claim in claims
        ]

    async def aclose(self) -> None:
        if isinstance(self.client, LazyS3Client):
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
