"""Adding a sandbox backend or a model provider without touching Sessionflow: by import
path in the settings (`SESSIONFLOW_SANDBOX`, `SESSIONFLOW_PROVIDERS`) or by registering
a factory. The backend and providers the settings name are defined in this module,
as a user's own package would define them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from sessionflow.agents.builtin import bash_tool
from sessionflow.agents.definition import agent
from sessionflow.config import Settings
from sessionflow.contract import FinishReason, TurnStatus
from sessionflow.errors import InvalidInput
from sessionflow.messages import Role, Usage
from sessionflow.providers import registry as provider_registry
from sessionflow.providers.base import ModelEvent, ModelRequest, StepFinished, TextDelta
from sessionflow.providers.registry import (
    providers_from_settings,
    register_provider,
    with_registered_providers,
)
from sessionflow.providers.scripted import Script, ScriptStep
from sessionflow.sandbox import registry as sandbox_registry
from sessionflow.sandbox.base import ExecResult, OutputCallback
from sessionflow.sandbox.local import LocalSandbox, LocalSandboxBackend
from sessionflow.sandbox.registry import backend_from_settings, register_sandbox_backend
from sessionflow.worker.main import run_worker
from tests.agents import bash
from tests.conftest import StartWorker

HERE = __name__  # "tests.test_registration": the module import paths below name

# -- a user's sandbox backend: local workspaces that log every command ---------------

# (sandbox id, command) of every command run through a RecordingBackend.
COMMANDS: list[tuple[str, str]] = []


class RecordingSandbox(LocalSandbox):
    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecResult:
        COMMANDS.append((self.id, command))
        return await super().exec(
            command, cwd=cwd, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )


class RecordingBackend(LocalSandboxBackend):
    """Built from the worker's settings: `SESSIONFLOW_SANDBOX=tests.test_registration:RecordingBackend`."""

    name = "recording"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.sandboxes / "recorded", isolation="none")

    async def create(self, *, owner: str) -> RecordingSandbox:
        return _recording(await super().create(owner=owner))

    async def connect(self, sandbox_id: str, *, owner: str | None = None) -> RecordingSandbox:
        return _recording(await super().connect(sandbox_id, owner=owner))


def _recording(sandbox: LocalSandbox) -> RecordingSandbox:
    return RecordingSandbox(**{f.name: getattr(sandbox, f.name) for f in fields(sandbox)})


# -- a user's model provider: answers `myprov/<model>` with what it heard -------------


class EchoProvider:
    """Built with no arguments: `SESSIONFLOW_PROVIDERS=tests.test_registration:EchoProvider`."""

    name = "myprov"

    def __init__(self, greeting: str = "myprov") -> None:
        self.greeting = greeting

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        heard = next(m for m in reversed(request.messages) if m.role is Role.USER).text()
        yield TextDelta(f"{self.greeting}/{request.model} heard ")
        yield TextDelta(repr(heard))
        yield StepFinished(
            reason=FinishReason.STOP, usage=Usage(input_tokens=len(heard), output_tokens=3)
        )


def echo_from_settings(settings: Settings) -> EchoProvider:
    """A factory taking the settings."""
    return EchoProvider(greeting=f"queue {settings.task_queue}")


ECHO = EchoProvider(greeting="instance")  # an instance, used as is
NOT_A_FACTORY = "just text"


def takes_two(a: object, b: object) -> EchoProvider:
    return EchoProvider()


def gives_nothing_useful() -> object:
    return 42


class Other(EchoProvider):
    name = "other"


class ScriptedImpostor(EchoProvider):
    name = "scripted"


# -- (a) a custom sandbox backend, end to end -----------------------------------------


async def test_a_backend_named_by_import_path_runs_the_sessions_commands(
    start_worker: StartWorker, sandbox_root: Path, unique_id: str
) -> None:
    settings = Settings.from_env(
        {
            "SESSIONFLOW_SANDBOX": f"{HERE}:RecordingBackend",
            "SESSIONFLOW_SANDBOX_ROOT": str(sandbox_root),
        }
    )
    backend = backend_from_settings(settings)
    assert isinstance(backend, RecordingBackend)

    marker = f"ran-{uuid.uuid4().hex[:8]}"
    command = f"echo {marker} > proof.txt; cat proof.txt"
    shell = agent(
        "shell",
        model=Script(
            name="shell",
            delay=0,
            turns=[
                [
                    ScriptStep(tool_calls=[bash(command)]),
                    ScriptStep(text="It said {last_tool_output}"),
                ]
            ],
        ),
        tools=[bash_tool()],
    )
    client = await start_worker([shell], sandboxes=backend)
    session = client.agent("shell").session(unique_id)
    outcome = await asyncio.wait_for((await session.send("go")).outcome, 30)
    assert outcome.status is TurnStatus.FINISHED

    sandbox_id = await session.sandbox.get_id()
    assert (sandbox_id, command) in COMMANDS
    (call,) = (await session.history())[-1].tool_parts()
    assert call.output["stdout"] == f"{marker}\n"  # type: ignore[index]
    assert marker in (await session.history())[-1].text()
    # The backend's own root, from the settings it was built with.
    assert (sandbox_root / "recorded" / str(sandbox_id) / "proof.txt").read_text() == f"{marker}\n"


def test_a_registered_backend_is_chosen_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sandbox_registry, "_BACKENDS", dict(sandbox_registry._BACKENDS))
    register_sandbox_backend("recording", RecordingBackend)
    settings = Settings.from_env(
        {"SESSIONFLOW_SANDBOX": "recording", "SESSIONFLOW_SANDBOX_ROOT": str(tmp_path)}
    )
    backend = backend_from_settings(settings)
    assert isinstance(backend, RecordingBackend) and backend.root == tmp_path / "recorded"
    with pytest.raises(InvalidInput, match=r"\(local, e2b, recording\)"):
        backend_from_settings(Settings(sandbox_backend="firecracker"))


def test_the_built_in_backends_are_registered(tmp_path: Path) -> None:
    local = backend_from_settings(Settings.from_env({"SESSIONFLOW_SANDBOX_ROOT": str(tmp_path)}))
    assert isinstance(local, LocalSandboxBackend) and local.root == tmp_path
    e2b = backend_from_settings(
        Settings.from_env({"SESSIONFLOW_SANDBOX": "e2b", "SESSIONFLOW_E2B_TEMPLATE": "py"})
    )
    assert type(e2b).__name__ == "E2BSandboxBackend" and e2b.name == "e2b"


# -- (b) a custom model provider, end to end ------------------------------------------


async def test_a_provider_named_by_import_path_answers_its_models(
    start_worker: StartWorker, unique_id: str
) -> None:
    settings = Settings.from_env({"SESSIONFLOW_PROVIDERS": f" {HERE}:EchoProvider "})
    assert settings.providers == (f"{HERE}:EchoProvider",)
    providers = providers_from_settings(settings)
    assert sorted(p.name for p in providers) == ["anthropic", "myprov", "openai"]

    client = await start_worker([agent("mine", model="myprov/x")], providers=providers)
    session = client.agent("mine").session(unique_id)
    outcome = await asyncio.wait_for((await session.send("hello there")).outcome, 30)
    assert outcome.status is TurnStatus.FINISHED
    assert (await session.history())[-1].text() == "myprov/x heard 'hello there'"
    assert "myprov/x" in (await session.usage()).by_model


async def test_a_registered_provider_is_on_every_worker(
    start_worker: StartWorker, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_registry, "_PROVIDERS", dict(provider_registry._PROVIDERS))
    register_provider("myprov", lambda settings: EchoProvider(greeting="registered"))
    client = await start_worker([agent("mine", model="myprov/y")])  # no providers passed
    session = client.agent("mine").session(unique_id)
    await asyncio.wait_for((await session.send("hi")).outcome, 30)
    assert (await session.history())[-1].text() == "registered/y heard 'hi'"


@pytest.mark.parametrize(
    ("attr", "greeting"),
    [
        ("EchoProvider", "myprov"),  # a class, called with no arguments
        ("echo_from_settings", "queue q7"),  # a factory, called with the settings
        ("ECHO", "instance"),  # an instance, used as is
    ],
)
def test_what_an_import_path_may_name(attr: str, greeting: str) -> None:
    settings = Settings.from_env(
        {"SESSIONFLOW_PROVIDERS": f"{HERE}:{attr},{HERE}:Other", "SESSIONFLOW_TASK_QUEUE": "q7"}
    )
    by_name: dict[str, Any] = {p.name: p for p in providers_from_settings(settings)}
    assert set(by_name) == {"myprov", "other", "anthropic", "openai"}
    assert by_name["myprov"].greeting == greeting


def test_a_configured_provider_replaces_a_registered_one_of_its_name() -> None:
    class Anthropic(EchoProvider):
        name = "anthropic"

    mine = Anthropic()
    assert [p for p in with_registered_providers([mine]) if p.name == "anthropic"] == [mine]


# -- (c) bad values: one clear line ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "xyz",
            "SESSIONFLOW_SANDBOX='xyz': not a registered backend (local, e2b) nor an "
            "importable 'module:attr' (No module named 'xyz')",
        ),
        (
            "no_such_pkg.sandboxes:Firecracker",
            "SESSIONFLOW_SANDBOX='no_such_pkg.sandboxes:Firecracker': not a registered backend "
            "(local, e2b) nor an importable 'module:attr' (No module named 'no_such_pkg')",
        ),
        (
            f"{HERE}:Firecracker",
            f"SESSIONFLOW_SANDBOX='{HERE}:Firecracker': not a registered backend (local, e2b) "
            f"nor an importable 'module:attr' (module '{HERE}' has no attribute 'Firecracker')",
        ),
        (
            HERE,
            f"SESSIONFLOW_SANDBOX='{HERE}': not a registered backend (local, e2b) nor an "
            f"importable 'module:attr' (no ':attr' after the module '{HERE}')",
        ),
        (
            f"{HERE}:NOT_A_FACTORY",
            f"SESSIONFLOW_SANDBOX='{HERE}:NOT_A_FACTORY': not a registered backend (local, e2b) "
            "nor an importable 'module:attr' (it names a str, not a SandboxBackend, class or "
            "factory)",
        ),
        (
            f"{HERE}:takes_two",
            f"SESSIONFLOW_SANDBOX='{HERE}:takes_two': not a registered backend (local, e2b) "
            "nor an importable 'module:attr' (it must take no arguments or just the Settings, "
            "not (a: 'object', b: 'object') -> 'EchoProvider')",
        ),
        (
            f"{HERE}:gives_nothing_useful",
            f"SESSIONFLOW_SANDBOX='{HERE}:gives_nothing_useful' gave 42, not a SandboxBackend "
            "(an object with name, create and connect)",
        ),
    ],
)
def test_a_bad_sandbox_setting_says_what_is_accepted(value: str, message: str) -> None:
    settings = Settings.from_env({"SESSIONFLOW_SANDBOX": value})
    with pytest.raises(InvalidInput) as raised:
        backend_from_settings(settings)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            f"{HERE}:EchoProvider,nope.models:Provider",
            "SESSIONFLOW_PROVIDERS entry 'nope.models:Provider': not an importable "
            "'module:attr' of a provider (No module named 'nope')",
        ),
        (
            f"{HERE}:echo",
            f"SESSIONFLOW_PROVIDERS entry '{HERE}:echo': not an importable 'module:attr' of a "
            f"provider (module '{HERE}' has no attribute 'echo')",
        ),
        (
            f"{HERE}:gives_nothing_useful",
            f"SESSIONFLOW_PROVIDERS entry '{HERE}:gives_nothing_useful' gave 42, not a "
            "ModelProvider (an object with name and stream)",
        ),
        (
            f"{HERE}:EchoProvider,{HERE}:ECHO",
            f"SESSIONFLOW_PROVIDERS entry '{HERE}:ECHO' is a second provider named 'myprov'",
        ),
        (
            f"{HERE}:ScriptedImpostor",
            f"SESSIONFLOW_PROVIDERS entry '{HERE}:ScriptedImpostor' is named 'scripted', the "
            "provider built from the agents' scripts; give it another name",
        ),
    ],
)
def test_a_bad_providers_setting_names_the_entry(value: str, message: str) -> None:
    settings = Settings.from_env({"SESSIONFLOW_PROVIDERS": value})
    with pytest.raises(InvalidInput) as raised:
        providers_from_settings(settings)
    assert str(raised.value) == message


async def test_a_worker_with_a_bad_setting_fails_before_connecting() -> None:
    # Nothing listens on port 1: the error must come from the setting, not a connection.
    settings = Settings(
        temporal_address="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0", sandbox_backend="xyz"
    )
    with pytest.raises(InvalidInput, match=r"^SESSIONFLOW_SANDBOX='xyz': not a registered"):
        await asyncio.wait_for(run_worker(settings, [], asyncio.Event()), 5)


def test_registered_names_must_be_plain_words() -> None:
    with pytest.raises(InvalidInput, match="plain word"):
        register_sandbox_backend("mypkg:Firecracker", RecordingBackend)
    with pytest.raises(InvalidInput, match="plain word"):
        register_provider("my/prov", echo_from_settings)
    with pytest.raises(InvalidInput, match="built from the agents' scripts"):
        register_provider("scripted", echo_from_settings)
