"""What `pip install sessionflow` puts on a machine: one import package, `sessionflow`,
and nothing that shadows a user's own `workflows`, `client`, `agents` or `worker`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from sessionflow.agents.definition import agent
from sessionflow.cli.localstack import LocalStack
from sessionflow.providers.scripted import Script, ScriptStep
from tests.conftest import StartWorker
from tests.processes import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def build_inputs(into: Path) -> Path:
    """A copy of what the wheel is built from (pyproject, README, the mapped folders), so
    the build's `build/` and `*.egg-info` land in a temporary directory, not the tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    into.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, into / name)
    for folder in sorted(set(PACKAGE_DIRS.values())):
        shutil.copytree(REPO / folder, into / folder, ignore=ignore)
    return into


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_the_wheel_holds_one_package_with_every_module(tmp_path: Path) -> None:
    source = build_inputs(tmp_path / "source")
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    (wheel,) = out.glob("sessionflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = [n.split("/")[0] for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(f"{dist_info[0]}/entry_points.txt").decode()

    top = {name.split("/")[0] for name in names}
    assert len(dist_info) == 1 and dist_info[0].startswith("sessionflow-"), dist_info
    assert top == {"sessionflow", dist_info[0]}, (
        f"the wheel's top-level names should be sessionflow and its dist-info: {sorted(top)}"
    )

    # Every module and py.typed of each mapped folder, at its installed path: a new
    # subfolder missing from `[tool.setuptools] packages` is left out of the wheel.
    expected: set[str] = set()
    for package, folder in PACKAGE_DIRS.items():
        root = source / folder
        target = package.replace(".", "/")
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            if "__pycache__" not in relative.parts and (
                path.suffix == ".py" or path.name == "py.typed"
            ):
                expected.add(f"{target}/{relative.as_posix()}")
    assert len(expected) > 50 and "sessionflow/py.typed" in expected
    expected.add("sessionflow/gateway/static/index.html")
    missing = sorted(expected - names)
    assert not missing, f"left out of the wheel (see pyproject's packages): {missing}"

    # The console script points at a module the wheel holds.
    assert "sessionflow = sessionflow.cli.commands:main" in entry_points
    assert "sessionflow/cli/commands.py" in names


# -- a user's project with packages named like ours ------------------------------------

ANSWER = "Hello from a user's project; you said {last_user_text}."
USER_PACKAGES = ("workflows", "client", "agents", "worker")

USER_SCRIPT = """
import asyncio
import sys
from pathlib import Path

import agents
import client
import workflows
import worker

here = Path(__file__).resolve().parent
for package in (workflows, client, agents, worker):
    assert package.MINE is True, package
    assert Path(package.__file__).resolve().parent.parent == here, package.__file__

import sessionflow
from sessionflow import Script, ScriptStep, SessionClient

greeter = sessionflow.agent(
    "packaged",
    model=Script(name="packaged", delay=0, turns=[[ScriptStep(text=ANSWER_TEXT)]]),
)


async def main(temporal_address, redis_url, task_queue, session_id):
    connected = await SessionClient.connect(
        temporal_address=temporal_address, redis_url=redis_url, task_queue=task_queue,
        agents=[greeter],
    )
    async with connected:
        session = connected.session(session_id, agent=greeter)
        result = await session.send("ping")
        outcome = await asyncio.wait_for(result.done, 60)
        outcome.raise_for_failure()
        history = await session.history()
        print("ANSWER:", history[-1].text())


asyncio.run(main(*sys.argv[1:5]))

# sessionflow's subpackages were imported by name as sessionflow.*, never as ours.
for package in (workflows, client, agents, worker):
    assert sys.modules[package.__name__] is package, package.__name__
    assert getattr(sys.modules[package.__name__], "MINE", False) is True
import sessionflow.workflows
assert Path(sessionflow.workflows.__file__).resolve().parent != here / "workflows"
print("OWN PACKAGES INTACT")
"""


def user_project(root: Path) -> Path:
    """A typical Temporal service repository: its own top-level packages, our names."""
    for name in USER_PACKAGES:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(f'"""The user\'s own {name}."""\n\nMINE = True\n')
    script = root / "main.py"
    script.write_text(textwrap.dedent(USER_SCRIPT).replace("ANSWER_TEXT", repr(ANSWER)))
    return script


async def test_a_user_project_keeps_its_own_workflows_client_agents_and_worker(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str, tmp_path: Path
) -> None:
    greeter = agent(
        "packaged", model=Script(name="packaged", delay=0, turns=[[ScriptStep(text=ANSWER)]])
    )
    await start_worker([greeter])
    project = tmp_path / "service"
    script = user_project(project)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stack.config.temporal_address, stack.config.redis_url,
        task_queue, unique_id,
        cwd=project, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    output = stdout.decode() + stderr.decode()
    assert proc.returncode == 0, output
    assert "ANSWER: Hello from a user's project; you said ping." in stdout.decode(), output
    assert "OWN PACKAGES INTACT" in stdout.decode(), output
