"""A real S3-compatible server for the S3 payload store's tests: moto's (the
`moto[server]` wheel), in a subprocess on a loopback port, started once per test module
and applying one request at a time (`tests/moto_atomic.py`: S3's conditional writes are
atomic, moto's are not);
each test gets a bucket of its own.

Registered for every test module by `tests/conftest.py` (`pytest_plugins`).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessionflow.cli.localstack import free_port, port_open


@dataclass
class S3Server:
    url: str
    bucket: str

    def session_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "sessionflow-test",
            "AWS_SECRET_ACCESS_KEY": "sessionflow-test-secret",
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        """An aioboto3 client of the server (`async with server.client() as s3:`)."""
        import aioboto3

        env = self.session_env()
        session = aioboto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )
        return session.client("s3", endpoint_url=self.url)

    async def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under `prefix` (all pages)."""
        found: list[str] = []
        async with self.client() as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            async for page in pages:
                found.extend(item["Key"] for item in page.get("Contents", []))
        return found


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of moto's S3 server, running for the test module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("moto_atomic.py")), "127.0.0.1", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "moto's S3 server did not start in 30 s"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
async def s3_server(moto_server: str) -> AsyncIterator[S3Server]:
    """The module's S3 server, with a new, empty bucket for the test."""
    server = S3Server(moto_server, f"sessionflow-{uuid.uuid4().hex[:12]}")
    async with server.client() as s3:
        await s3.create_bucket(Bucket=server.bucket)
    yield server
