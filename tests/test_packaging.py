"""What `pip install sessionflow` puts on a machine: one import package, `sessionflow`,
and nothing that shadows a user's own `workflows`, `client`, `agents` or `worker`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from sessionflow.cli.localstack import LocalStack
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

USER_PACKAGES = ("workflows", "client", "agents", "worker")


def readme_client_example() -> str:
    """The README's complete client program (the block after `<!-- example:client -->`)."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- example:client -->\n```python\n(.*?)```", readme, re.S)
    assert found, "README.md has no client example after '<!-- example:client -->'"
    return found.group(1)


# Before the README's program: the user's own packages are imported and are theirs.
PRELUDE = """
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
"""

# After it: sessionflow's subpackages were imported as sessionflow.*, never as theirs.
POSTLUDE = """
for package in (workflows, client, agents, worker):
    assert sys.modules[package.__name__] is package, package.__name__
import sessionflow.workflows
assert Path(sessionflow.workflows.__file__).resolve().parent != here / "workflows"
print("OWN PACKAGES INTACT")
"""


def user_project(root: Path, program: str) -> Path:
    """A typical Temporal service repository: its own top-level packages, our names."""
    for name in USER_PACKAGES:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(f'"""The user\'s own {name}."""\n\nMINE = True\n')
    script = root / "app.py"
    script.write_text(PRELUDE + program + POSTLUDE)
    return script


async def test_the_readme_client_example_runs_in_a_project_with_its_own_packages(
    stack: LocalStack, start_worker: StartWorker, task_queue: str, unique_id: str, tmp_path: Path
) -> None:
    program = readme_client_example().replace('"user-42-chat"', repr(unique_id))
    assert repr(unique_id) in program
    # The worker serves the very agent the README defines.
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(program, "README.md", "exec"), namespace)
    await start_worker([namespace["greeter"]])
    project = tmp_path / "service"
    script = user_project(project, program)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env |= {
        "TEMPORAL_ADDRESS": stack.config.temporal_address,
        "REDIS_URL": stack.config.redis_url,
        "SESSIONFLOW_TASK_QUEUE": task_queue,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script),
        cwd=project, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    output = stdout.decode() + stderr.decode()
    assert proc.returncode == 0, output
    assert "Hello! You said: Hi there\n[finished]" in stdout.decode(), output
    assert "OWN PACKAGES INTACT" in stdout.decode(), output
