"""The codec server shows ops every message of a long session, as the Temporal UI asks.

A session past the transcript commit size (its messages committed to the transcript
store as they grow) and with a message over the payload threshold (stored outside
history by the SDK's `ExternalStorage`): the `messages` query, paged, and the history's
payloads are sent to `sessionflow codec-server`'s `/decode` exactly as the UI sends
them (proto3 JSON, base64 metadata and data), and come back readable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from redis.asyncio import Redis
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client
from temporalio.converter import ExternalStorage

from sessionflow.agents.definition import agent
from sessionflow.cli.codec import serve_codec_for_dev
from sessionflow.cli.localstack import LocalStack, StackConfig
from sessionflow.client.client import SessionClient
from sessionflow.config import Settings
from sessionflow.connections import connect_temporal
from sessionflow.contract import SessionLimits
from sessionflow.gateway.codec import create_codec_app
from sessionflow.gateway.main import serve_gateway
from sessionflow.providers.scripted import Script, ScriptStep
from sessionflow.storage import external_storage_from_settings
from sessionflow.storage.resolving import PayloadResolver
from tests.conftest import StartWorker
from tests.serving import serving

TOKEN = "codec-token-for-tests"
UI = "http://localhost:8233"
WORDY = " ".join(["and so on"] * 40)
wordy_agent = agent(
    "wordy",
    model=Script(name="wordy", delay=0, turns=[[ScriptStep(text=f"Answer {{turn}}: {WORDY}.")]]),
)
# Past the sending client's payload threshold: the SDK stores the signal outside history.
HUGE = "x" * (8 * 1024)


@pytest.fixture
async def codec(stack: LocalStack) -> AsyncIterator[str]:
    settings = stack.config.point(Settings())
    app = create_codec_app(
        PayloadResolver(external_storage_from_settings(settings)).decode, token=TOKEN, origins=[UI]
    )
    async with serving(app) as url:
        yield url


def as_ui_sends(payloads: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


async def decode(http: httpx.AsyncClient, url: str, payloads: list[Payload]) -> list[Any]:
    """POST the payloads as the UI does and parse what comes back."""
    response = await http.post(
        f"{url}/decode",
        json=as_ui_sends(payloads),
        headers={"authorization": f"Bearer {TOKEN}", "x-namespace": "default", "origin": UI},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == UI
    decoded = []
    for item in response.json()["payloads"]:
        encoding = base64.b64decode(item["metadata"]["encoding"])
        assert encoding == b"json/plain", encoding
        decoded.append(json.loads(base64.b64decode(item["data"])))
    return decoded


async def query_payloads(temporal: Client, workflow_id: str, arg: Any) -> list[Payload]:
    """The `messages` query's answer as the UI gets it: raw payloads from the server."""
    arguments = await temporal.data_converter.encode([arg]) if arg is not None else []
    response = await temporal.workflow_service.query_workflow(
        QueryWorkflowRequest(
            namespace="default",
            execution=WorkflowExecution(workflow_id=workflow_id),
            query=WorkflowQuery(query_type="messages", query_args={"payloads": arguments}),
        )
    )
    return list(response.query_result.payloads)


async def test_the_codec_server_shows_every_message_of_a_long_session(
    start_worker: StartWorker,
    stack: LocalStack,
    temporal: Client,
    redis: Redis,
    task_queue: str,
    codec: str,
    unique_id: str,
) -> None:
    limits = SessionLimits(commit_transcript_after_bytes=2048)
    client = await start_worker([wordy_agent], limits=limits)
    session = client.agent("wordy").session(unique_id)
    # The first message from a client that stores payloads of 1 KiB or more outside
    # history (in the same payload store as everyone's).
    stored = temporal.data_converter.external_storage
    assert stored is not None
    low = await connect_temporal(
        stack.config.temporal_address,
        external_storage=ExternalStorage(drivers=stored.drivers, payload_size_threshold=1024),
    )
    sender = SessionClient(low, redis, task_queue=task_queue, limits=limits)
    await (await sender.agent("wordy").session(unique_id).send(HUGE)).done
    for turn in range(2, 16):
        await (await session.send(f"question {turn}")).done
    history = await session.history()
    assert len(history) == 30

    async with httpx.AsyncClient(timeout=30) as http:
        # The messages query, page by page, decoded as the UI decodes it.
        seen = []
        offset = 0
        while offset < len(history):
            raw = await query_payloads(
                temporal, session.workflow_id, {"offset": offset, "limit": 7}
            )
            if offset == 0:  # the committed messages: only a reference from the workflow
                held = json.loads(raw[0].data)
                assert held["complete"] is False and held["messages"] == []
                assert held["transcript"] is not None
            [page] = await decode(http, codec, raw)
            assert page["complete"] is True and page["total"] == 30
            assert len(page["messages"]) == min(7, 30 - offset)
            seen += page["messages"]
            offset += 7
        assert [m["id"] for m in seen] == [m.id for m in history]
        # Asked with no input, as the UI's Queries tab does by default: the first page.
        [first] = await decode(
            http, codec, await query_payloads(temporal, session.workflow_id, None)
        )
        assert first["offset"] == 0 and first["limit"] == 50 and len(first["messages"]) == 30
        assert [
            "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text") for m in seen
        ] == [m.text() for m in history]

        # History: the huge message's signal is a payload-store reference, and a late
        # model step's input a transcript reference; both come back readable.
        events = (await temporal.get_workflow_handle(session.workflow_id).fetch_history()).events
        signal = next(
            e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        )
        raw_signal = list(signal.workflow_execution_signaled_event_attributes.input.payloads)
        assert len(raw_signal[0].data) < 10_000  # a reference
        [request] = await decode(http, codec, raw_signal)
        assert request["message"]["parts"][0]["text"] == HUGE

        steps = [
            e.activity_task_scheduled_event_attributes
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name
            == "sessionflow.model_step"
        ]
        raw_step = list(steps[-1].input.payloads)
        assert b"question 2" not in raw_step[0].data  # committed: only referenced
        [params] = await decode(http, codec, raw_step)
        assert params["transcript"] is not None
        shown = [m["id"] for m in params["transcript_messages"]] + [
            m["id"] for m in params["messages"]
        ]
        assert params["transcript_messages_omitted"] == 0
        # Every message, the answer being written included.
        assert [m.id for m in history] == list(dict.fromkeys(shown))


async def test_the_codec_server_refuses_requests_without_the_token(codec: str) -> None:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            response = await http.post(
                f"{codec}/decode", json=as_ui_sends([payload]), headers=headers
            )
            assert response.status_code == 401, headers
        # The browser's preflight needs no token, and names what the UI may send.
        preflight = await http.options(
            f"{codec}/default/decode",
            headers={
                "origin": UI,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == UI
        assert preflight.headers["access-control-allow-credentials"] == "true"
        # The namespace form the CLI's --codec-endpoint template uses; plain payloads
        # come back as they were.
        ok = await http.post(
            f"{codec}/default/decode",
            json=as_ui_sends([payload]),
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert ok.status_code == 200
        assert ok.json() == as_ui_sends([payload])
        encoded = await http.post(
            f"{codec}/encode",
            json=as_ui_sends([payload]),
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert encoded.json() == as_ui_sends([payload])
        bad = await http.post(
            f"{codec}/decode", json={"nope": 1}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert bad.status_code == 400


def test_the_command_refuses_to_listen_beyond_loopback_without_a_token() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SESSIONFLOW_CODEC_HOST": "0.0.0.0"}
    env.pop("SESSIONFLOW_CODEC_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "sessionflow", "codec-server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "SESSIONFLOW_CODEC_TOKEN is not set" in done.stderr


async def test_the_dev_ui_decodes_through_the_codec_server(tmp_path: Path) -> None:
    """`sessionflow dev` points its Temporal UI at the codec server it runs."""
    config = replace(
        StackConfig.on_free_ports(tmp_path, ui=True), codec_endpoint="http://127.0.0.1:8081"
    )
    async with LocalStack(config), httpx.AsyncClient() as http:
        for _ in range(100):
            try:
                settings = (await http.get(f"{config.ui_url}/api/v1/settings")).json()
                break
            except (httpx.TransportError, ValueError):
                await asyncio.sleep(0.1)
        assert settings["Codec"]["Endpoint"] == "http://127.0.0.1:8081"


async def test_a_port_taken_after_devs_check_skips_the_codec_server_and_dev_goes_on(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dev` checks the codec port before it starts; another program (another `dev`)
    may take it before the codec server binds. That bind failing once ended the whole
    process (uvicorn exits from a task of its own): now it is one line, and `dev` runs
    on without a codec server until it is stopped."""
    settings = stack.config.point(Settings())
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await serve_gateway(create_codec_app(lambda p: p, token=None, origins=[]), "127.0.0.1", port, asyncio.Event())  # type: ignore[arg-type]  # fmt: skip

        stop = asyncio.Event()
        codec = asyncio.create_task(serve_codec_for_dev(settings, "127.0.0.1", port, stop))
        said = ""
        async with asyncio.timeout(30):
            while "could not listen" not in said:
                await asyncio.sleep(0.05)
                said += capsys.readouterr().err
        assert f"127.0.0.1:{port}" in said
        assert not codec.done()
        stop.set()
        await asyncio.wait_for(codec, 10)
