"""A sandbox belongs to the tenant whose session created it: another tenant naming its
id gets "not found", exactly as for an id that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionflow.contract import TurnStatus
from sessionflow.errors import SandboxNotFound
from sessionflow.sandbox.e2b import E2BSandboxBackend
from sessionflow.sandbox.local import LocalSandboxBackend
from tests.agents import tool_agent
from tests.conftest import Gateway, StartWorker
from tests.fake_e2b import FakeE2B

SECRET = "tenant-a-secret-4b1d"


async def test_another_tenant_cannot_use_a_sandbox_by_its_id(
    start_worker: StartWorker, unique_id: str
) -> None:
    client = await start_worker([tool_agent])
    mine = client.agent("tooling").session(f"acme:{unique_id}")
    planted = await mine.sandbox.exec(f"echo {SECRET} > note.txt && cat note.txt")
    assert planted.stdout.strip() == SECRET
    sandbox_id = await mine.sandbox.get_id()
    assert sandbox_id is not None

    theirs = client.agent("tooling").session(f"globex:{unique_id}")
    # Switching to it is refused as if it did not exist...
    with pytest.raises(SandboxNotFound) as refused:
        await theirs.update(sandbox_id=sandbox_id)
    with pytest.raises(SandboxNotFound) as missing:
        await theirs.update(sandbox_id="sbx-0000000000000000")
    assert str(refused.value).replace(sandbox_id, "X") == str(missing.value).replace(
        "sbx-0000000000000000", "X"
    )
    # ...and so is a message that names it: the turn fails, nothing runs there.
    result = await theirs.send("cat note.txt", sandbox_id=sandbox_id)
    outcome = await result.outcome
    assert outcome.status is TurnStatus.FAILED
    assert outcome.error_type == "SandboxNotFound"
    assert (await theirs.sandbox.get_id()) != sandbox_id
    looked = await theirs.sandbox.exec("cat note.txt; ls -a")
    assert SECRET not in looked.stdout + looked.stderr

    # Another session of the same tenant may be pointed at it (VibeKit's setSession).
    colleague = client.agent("tooling").session(f"acme:{unique_id}-2")
    await colleague.update(sandbox_id=sandbox_id)
    assert (await colleague.sandbox.exec("cat note.txt")).stdout.strip() == SECRET


async def test_a_foreign_sandbox_id_over_http_is_not_found(
    gateway: Gateway, unique_id: str
) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        acme = gateway.client.agent("tooling").session(f"acme:{unique_id}")
        await acme.sandbox.exec(f"echo {SECRET} > note.txt")
        sandbox_id = await acme.sandbox.get_id()
        theirs = f"/v1/sessions/{unique_id}-b"
        sent = await http.post(
            f"{theirs}/messages",
            json={"message": "hello"},
            headers=gateway.headers("globex"),
        )
        assert sent.status_code == 202
        # The session must be idle to change its sandbox (busy is 409, a different test).
        globex = gateway.client.agent("tooling").session(f"globex:{unique_id}-b")
        await globex.answer(sent.json()["assistantMessageId"]).outcome
        patched = await http.patch(
            theirs, json={"sandbox_id": sandbox_id}, headers=gateway.headers("globex")
        )
        assert patched.status_code == 404
        assert patched.json()["error"]["code"] == "sandbox_not_found"
        assert SECRET not in patched.text


async def test_local_sandboxes_record_their_owner_out_of_the_sandboxes_reach(
    tmp_path: Path,
) -> None:
    backend = LocalSandboxBackend(tmp_path / "sandboxes")
    sandbox = await backend.create(owner="tenant:acme")
    assert (await backend.connect(sandbox.id, owner="tenant:acme")).id == sandbox.id
    assert (await backend.connect(sandbox.id)).id == sandbox.id  # lifecycle calls
    with pytest.raises(SandboxNotFound):
        await backend.connect(sandbox.id, owner="tenant:globex")
    # The record is not in the workspace, so the sandbox cannot rewrite it.
    assert not any("acme" in p.read_text(errors="ignore") for p in _files(sandbox.workspace))


async def test_e2b_sandboxes_carry_their_owner_in_metadata(tmp_path: Path) -> None:
    fake = FakeE2B(tmp_path)
    backend = E2BSandboxBackend(sdk=fake, api_key=fake.valid_key)
    sandbox = await backend.create(owner="tenant:acme")
    assert fake.sandboxes[sandbox.id].metadata == {
        "created-by": "sessionflow",
        "sessionflow-owner": "tenant:acme",
    }
    assert (await backend.connect(sandbox.id, owner="tenant:acme")).id == sandbox.id
    with pytest.raises(SandboxNotFound):
        await backend.connect(sandbox.id, owner="tenant:globex")
    assert fake.sandboxes[sandbox.id].resumed == 0  # refused before connecting


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
