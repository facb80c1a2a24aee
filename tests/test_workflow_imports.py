"""Workflow code stays deterministic without the sandbox re-importing it.

The worker passes the `sessionflow` package through Temporal's workflow sandbox
(`worker/build.py`: re-importing `workflows/` for every workflow instance cost a burst
of new sessions milliseconds each on the worker's event loop), so the sandbox's
import-time restrictions no longer look at our workflow code. This test does their job
for `workflows/`, statically: it imports only deterministic modules, calls no clock,
random source or I/O, and keeps no state in its modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
MODULES = sorted(WORKFLOWS.glob("*.py"))

# What workflow modules may import: the standard library's deterministic parts, the
# Temporal SDK, pydantic, and Sessionflow's data modules (no I/O at import or after).
ALLOWED = {
    "__future__",
    "asyncio",  # the workflow's own deterministic event loop
    "collections.abc",
    "contextlib",  # context managers of our own (no I/O)
    "dataclasses",
    "datetime",  # for timedelta; `datetime.now()` is refused below
    "functools",
    "typing",
    "temporalio",
    "temporalio.common",
    # The tracing interceptor's workflow side, imported only where a tracing worker runs it.
    "temporalio.contrib.opentelemetry",
    "temporalio.exceptions",
    "temporalio.workflow",
    "pydantic",
    "sessionflow",
    "sessionflow.budgets",  # pure: budget models and sums of usage
    "sessionflow.chunks",
    "sessionflow.compaction",  # pure: what a compaction keeps and sends
    "sessionflow.contract",
    "sessionflow.errors",
    "sessionflow.fragments",
    "sessionflow.ids",  # id rules and derivations: `re` and `hashlib`, no I/O
    "sessionflow.messages",
    "sessionflow.workflows",
}
# Calls that read a clock, a random source or the outside world. `workflow.now()` and
# `workflow.uuid4()` are the deterministic ones.
REFUSED_CALLS = {"now", "utcnow", "today", "time", "monotonic", "uuid4", "random", "sleep"}
REFUSED_BUILTINS = {"open", "print", "input", "exec", "eval"}


def imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_workflow_modules_import_only_deterministic_modules(path: Path) -> None:
    tree = ast.parse(path.read_text())
    unexpected = {
        name
        for name in imported(tree)
        if name not in ALLOWED and not name.startswith("sessionflow.workflows.")
    }
    assert not unexpected, f"{path.name} imports {sorted(unexpected)}"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_workflow_modules_call_no_clock_random_or_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in REFUSED_CALLS:
            owner = func.value
            assert isinstance(owner, ast.Name) and owner.id == "workflow", (
                f"{path.name}:{node.lineno} calls {ast.unparse(func)}(): use workflow.*"
            )
        if isinstance(func, ast.Name):
            assert func.id not in REFUSED_BUILTINS, f"{path.name}:{node.lineno} calls {func.id}()"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_workflow_modules_keep_no_module_state(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global | ast.Nonlocal)]
    for node in tree.body:  # module level: constants only, never a list or a set
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            assert not isinstance(node.value, ast.List | ast.Set | ast.ListComp), (
                f"{path.name}:{node.lineno} keeps a mutable module-level value"
            )
