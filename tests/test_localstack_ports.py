"""Ports of a free-port stack (the tests' and benchmarks'): all of them chosen by us and
distinct, so the Temporal dev server never picks one of its own that was just given
to another of its servers; and a server that dies while starting is reported at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from sessionflow.cli.localstack import LocalStack, StackConfig, StackError


async def test_a_free_port_stack_serves_temporals_http_api_on_its_own_port(
    tmp_path: Path,
) -> None:
    config = StackConfig.on_free_ports(tmp_path / "stack")
    assert config.http_port is not None and config.metrics_port is not None
    ports = [config.temporal_port, config.ui_port, config.redis_port]
    assert len({*ports, config.http_port, config.metrics_port}) == 5
    async with LocalStack(config), httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{config.http_port}/api/v1/namespaces")
        assert answer.status_code == 200, answer.text
        assert "default" in answer.text


async def test_temporal_dying_after_its_frontend_opened_is_reported_at_once(
    tmp_path: Path,
) -> None:
    # The HTTP API's port is taken: the frontend opens, then the server exits.
    config = StackConfig.on_free_ports(tmp_path / "stack")
    assert config.http_port is not None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.http_port))
        taken.listen()
        started = time.monotonic()
        with pytest.raises(StackError, match="temporal exited at start") as raised:
            async with LocalStack(config):
                pass
    assert "address already in use" in str(raised.value)
    assert time.monotonic() - started < 30  # not the 60 s start timeout
