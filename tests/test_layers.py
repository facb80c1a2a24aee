"""The import graph, read statically with `ast`: no cycles, and layers that point one way.

Every `.py` file of the folders pyproject's `[tool.setuptools.package-dir]` maps is read
under the name it is installed as (`workflows/turn.py` is `sessionflow.workflows.turn`,
`sessionflow/errors.py` is `sessionflow.errors`). Every import of a `sessionflow` module
counts, at module level and inside functions; `from sessionflow.x import y` means the
module `sessionflow.x.y` when there is one, else `sessionflow.x`.

- Cycles: imports under `if TYPE_CHECKING:` count too. The public face, `sessionflow/__init__.py`, is exempt (its re-exports are lazy, `__getattr__`),
  and so are a package `__init__.py`'s imports of its own submodules (re-exports);
  importing such a package from outside it counts as importing what it re-exports.
- Layers: every import counts, `TYPE_CHECKING` ones included. `LAYER_RULES` is the table.
- Nothing in the repository imports the old top-level names (`import workflows`,
  `from client import ...`): since the folders install as subpackages of `sessionflow`,
  those names belong to the user's own project.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]

GROUND = (
    "errors",
    "ids",
    "messages",
    "fragments",
    "ui_messages",
    "contract",
    "compaction",
    "chunks",
    "validation",
    "json_limits",
    "config",
    "_setting_fields",
    "_setting_values",
    "settings_table",
    "import_paths",
    "connections",
    "logs",
    "bridge_exit",
    "prices",
    "budgets",
    "webhooks",
    "tracing",
    "tracing_interceptor",
)
# `sessionflow` itself (the lazy public face) and `python -m sessionflow`.
PUBLIC = ("sessionflow", "sessionflow.__main__")

# The layers, lowest first, and what each one's modules may import besides modules of
# their own layer: other layers, or (an entry starting with `sessionflow.`) one module.
# The gateway uses the client only through the package's public names (`from
# sessionflow.client import SessionClient`), never its modules.
# `python -m tests.test_layers` prints this as the README's Markdown table.
ANYTHING = "*"
LAYER_RULES: dict[str, tuple[str, ...]] = {
    "ground": (),
    "workflows": ("ground",),
    "providers": ("ground",),
    "sandbox": ("ground",),
    "streams": ("ground",),
    "storage": ("ground",),
    "agents": ("ground", "providers", "sandbox"),
    "activities": ("ground", "agents", "providers", "sandbox", "streams", "storage"),
    "client": ("ground", "workflows", "streams", "storage", "agents"),
    "worker": (
        "ground",
        "workflows",
        "activities",
        "agents",
        "providers",
        "sandbox",
        "streams",
        "storage",
    ),
    "gateway": ("ground", "sessionflow.client"),
    "cli": (ANYTHING,),
    "public": (ANYTHING,),
}


def layer_modules(layer: str) -> str:
    if layer == "ground":
        return f"`sessionflow.{{{','.join(GROUND)}}}`"
    if layer == "public":
        return ", ".join(f"`{name}`" for name in PUBLIC)
    return f"`sessionflow.{layer}`"


def markdown_table() -> str:
    rows = ["| layer | modules | may import (besides its own modules) |", "| --- | --- | --- |"]
    for layer, rule in LAYER_RULES.items():
        may = "anything" if ANYTHING in rule else ", ".join(f"`{r}`" for r in rule) or "-"
        rows.append(f"| {layer} | {layer_modules(layer)} | {may} |")
    return "\n".join(rows)


# The names the folders had when they installed as top-level packages.
OLD_TOP_LEVEL = frozenset(
    package.split(".")[1] for package in PACKAGE_DIRS if package.startswith("sessionflow.")
)
# Folders of the repository that hold no code of ours (or copies of it).
NOT_OURS = {".venv", "venv", ".git", ".cache", "node_modules", "build", "dist", "__pycache__"}


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, as installed
    path: str  # its file, relative to the repository
    line: int
    statement: str  # e.g. "from sessionflow.client.session import Session"
    target: str  # the module imported, as resolved
    type_checking: bool  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


# -- reading the tree ------------------------------------------------------------------


def module_files() -> dict[str, Module]:
    """Every module of the installed package, by its installed name."""
    modules: dict[str, Module] = {}
    for package, folder in PACKAGE_DIRS.items():
        root = REPO / folder
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root)
            if "__pycache__" in relative.parts:
                continue
            parts = [*package.split("."), *relative.with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    nodes: Iterable[ast.AST], type_checking: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, anywhere (functions, classes, `with` blocks, `try`), with
    whether it sits under `if TYPE_CHECKING:`."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.body, True)
            yield from _import_nodes(node.orelse, type_checking)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node), type_checking)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _ours(name: str) -> bool:
    return name == "sessionflow" or name.startswith("sessionflow.")


def imports_in(
    source: str, importer: str, path: str, known: set[str], is_package: bool = False
) -> list[Import]:
    """The `sessionflow` imports in one file's source."""
    found: list[Import] = []
    for node, type_checking in _import_nodes(ast.parse(source, path).body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    as_ = f" as {alias.asname}" if alias.asname else ""
                    found.append(
                        Import(
                            importer,
                            path,
                            node.lineno,
                            f"import {alias.name}{as_}",
                            alias.name,
                            type_checking,
                        )
                    )
            continue
        module = _absolute(node, importer, is_package)
        if not _ours(module):
            continue
        shown = "." * node.level + (node.module or "")
        names: list[str] = []
        for alias in node.names:
            as_ = f" as {alias.asname}" if alias.asname else ""
            submodule = f"{module}.{alias.name}"
            if submodule in known:
                found.append(
                    Import(
                        importer,
                        path,
                        node.lineno,
                        f"from {shown} import {alias.name}{as_}",
                        submodule,
                        type_checking,
                    )
                )
            else:
                names.append(alias.name + as_)
        if names:
            statement = f"from {shown} import {', '.join(names)}"
            found.append(Import(importer, path, node.lineno, statement, module, type_checking))
    return found


@cache
def modules() -> dict[str, Module]:
    return module_files()


@cache
def all_imports() -> tuple[Import, ...]:
    known = set(modules())
    found: list[Import] = []
    for name, module in modules().items():
        path = module.path.relative_to(REPO).as_posix()
        found += imports_in(module.path.read_text(), name, path, known, module.is_package)
    return tuple(found)


# -- layers ----------------------------------------------------------------------------


def layer_of(module: str) -> str | None:
    if module in PUBLIC:
        return "public"
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "sessionflow":
        return None
    if parts[1] in GROUND:
        return "ground"
    if parts[1] in LAYER_RULES and parts[1] not in ("ground", "public"):
        return parts[1]
    return None


def allowed(importer_layer: str, target: str) -> bool:
    target_layer = layer_of(target)
    if target_layer == importer_layer:
        return True
    rule = LAYER_RULES[importer_layer]
    return ANYTHING in rule or target_layer in rule or target in rule


def layer_violations(imports: Iterable[Import]) -> list[str]:
    problems: list[str] = []
    for imp in imports:
        importer_layer = layer_of(imp.importer)
        if importer_layer is None or layer_of(imp.target) is None:
            continue  # reported by test_every_module_belongs_to_a_layer
        if not allowed(importer_layer, imp.target):
            may = ", ".join((importer_layer, *LAYER_RULES[importer_layer]))
            problems.append(
                f"{imp.where()}\n    {imp.importer} ({importer_layer}) -> {imp.target} "
                f"({layer_of(imp.target)}): {importer_layer} may import only {may}"
                f"{' (under TYPE_CHECKING)' if imp.type_checking else ''}"
            )
    return problems


# -- cycles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """`importer` runs `target` when it is imported, because of `imp`; `via` is the
    package whose `__init__.py` re-exports `target`, when `imp` imports that package."""

    importer: str
    target: str
    imp: Import
    via: str | None = None

    def __str__(self) -> str:
        through = f" (whose __init__ imports {self.target})" if self.via else ""
        return f"{self.importer} -> {self.target}: {self.imp.where()}{through}"


Graph = dict[str, dict[str, Edge]]


def import_graph(imports: Iterable[Import]) -> Graph:
    """Module -> module it imports -> the edge, with the exemptions above."""
    # `TYPE_CHECKING` imports count too: a circle that only type checkers see is still
    # two modules that each need the other to be understood.
    runtime = list(imports)
    reexports: dict[str, set[str]] = defaultdict(set)
    for imp in runtime:
        if imp.target.startswith(imp.importer + "."):  # a package __init__, own submodule
            reexports[imp.importer].add(imp.target)

    def seen_through(package: str) -> set[str]:
        reached: set[str] = set()
        todo = [package]
        while todo:
            for sub in reexports.get(todo.pop(), ()):
                if sub not in reached:
                    reached.add(sub)
                    todo.append(sub)
        return reached

    graph: Graph = defaultdict(dict)
    for imp in runtime:
        if imp.importer == "sessionflow" or imp.target.startswith(imp.importer + "."):
            continue
        graph[imp.importer].setdefault(imp.target, Edge(imp.importer, imp.target, imp))
        for sub in sorted(seen_through(imp.target)):
            if sub != imp.importer and not sub.startswith(imp.importer + "."):
                graph[imp.importer].setdefault(sub, Edge(imp.importer, sub, imp, imp.target))
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module, or with a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    nodes = sorted(set(graph) | {t for edges in graph.values() for t in edges})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, {}):
                    components.append(sorted(component))
    return sorted(components)


def a_cycle(graph: Graph, component: list[str]) -> list[Edge]:
    """The shortest cycle through the component's first module, as the edges making it."""
    start, members = component[0], set(component)
    previous: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, edge in sorted(graph.get(node, {}).items()):
                if target not in members:
                    continue
                if target == start:
                    path = [edge]
                    while path[-1].importer != start:
                        path.append(previous[path[-1].importer])
                    return path[::-1]
                if target not in previous:
                    previous[target] = edge
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def describe_cycles(graph: Graph) -> list[str]:
    reports = []
    for component in strongly_connected(graph):
        cycle = a_cycle(graph, component)
        chain = " -> ".join([cycle[0].importer, *(edge.target for edge in cycle)])
        lines = [f"cycle among {', '.join(component)}:", f"  {chain}"]
        lines += [f"    {edge}" for edge in cycle]
        lines += [
            f"    (also {edge})"
            for importer in component
            for target, edge in sorted(graph.get(importer, {}).items())
            if target in component and edge not in cycle
        ]
        reports.append("\n".join(lines))
    return reports


# -- the old names ---------------------------------------------------------------------

SPEC = re.compile(r"^([A-Za-z_]\w*)(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def our_python_files() -> Iterator[Path]:
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO).parts
        if any(part in NOT_OURS or part.endswith(".egg-info") for part in relative[:-1]):
            continue
        if any(part.startswith(".") for part in relative[:-1]):
            continue
        yield path


def old_name_uses(source: str, path: str) -> list[str]:
    """Imports of the old top-level names, and `module:attr` specs or `import_module`
    calls naming them (as `--agents workflows.x:y` would), in line order."""

    def old(name: str | None) -> bool:
        return name is not None and name.split(".")[0] in OLD_TOP_LEVEL

    def called(node: ast.Call) -> str | None:
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)

    uses: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            uses += [(node.lineno, f"import {a.name}") for a in node.names if old(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and old(node.module):
            names = ", ".join(a.name for a in node.names)
            uses.append((node.lineno, f"from {node.module} import {names}"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SPEC.match(node.value)
            and old(node.value)
        ):
            uses.append((node.lineno, f"{node.value!r} names the old package"))
        elif (
            isinstance(node, ast.Call)
            and called(node) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and old(node.args[0].value)
        ):
            uses.append((node.lineno, f"imports {node.args[0].value!r} by name"))
    return [f"{path}:{line}: {text}" for line, text in sorted(uses)]


# -- the tests -------------------------------------------------------------------------


def test_the_scanner_sees_every_kind_of_import() -> None:
    """The checks below are only as good as the scanner: it must see imports in
    functions, `with` blocks and `try`, tell `TYPE_CHECKING` ones apart, and resolve
    `from package import module` to the module."""
    source = """
from __future__ import annotations
from typing import TYPE_CHECKING
import os
import sessionflow.errors as errors
from sessionflow.client import inputs, SessionClient
from . import sibling
from ..streams.reader import StreamReader

with something():
    from sessionflow.workflows.turn import Turn

if TYPE_CHECKING:
    from sessionflow.agents.definition import Agent
else:
    from sessionflow.ids import validate_agent_name

def later():
    try:
        from sessionflow.gateway import app
    except ImportError:
        pass
"""
    known = {
        "sessionflow.client.inputs",
        "sessionflow.client.sibling",
        "sessionflow.gateway.app",
    }
    found = imports_in(source, "sessionflow.client.session", "client/session.py", known)
    assert [(i.line, i.target, i.type_checking) for i in found] == [
        (5, "sessionflow.errors", False),
        (6, "sessionflow.client.inputs", False),
        (6, "sessionflow.client", False),
        (7, "sessionflow.client.sibling", False),
        (8, "sessionflow.streams.reader", False),
        (11, "sessionflow.workflows.turn", False),
        (14, "sessionflow.agents.definition", True),
        (16, "sessionflow.ids", False),
        (20, "sessionflow.gateway.app", False),
    ]
    assert found[2].statement == "from sessionflow.client import SessionClient"
    assert layer_violations(found) == [
        "client/session.py:20: from sessionflow.gateway import app\n"
        "    sessionflow.client.session (client) -> sessionflow.gateway.app (gateway): "
        "client may import only client, ground, workflows, streams, storage, agents"
    ]


def test_the_cycle_finder_finds_cycles_and_ignores_re_exports() -> None:
    def imp(importer: str, target: str, type_checking: bool = False) -> Import:
        return Import(importer, importer, 1, f"import {target}", target, type_checking)

    graph = import_graph(
        [
            imp("sessionflow.a", "sessionflow.a.x"),  # a re-export: exempt
            imp("sessionflow.a.x", "sessionflow.a"),
            imp("sessionflow.b", "sessionflow.a"),  # sees through to sessionflow.a.x
            imp("sessionflow.a.x", "sessionflow.c"),
            imp("sessionflow.c", "sessionflow.b"),
            imp("sessionflow.d", "sessionflow.e", type_checking=True),  # counts too
            imp("sessionflow.e", "sessionflow.d"),
            imp("sessionflow", "sessionflow.f"),  # the lazy public face: exempt
            imp("sessionflow.f", "sessionflow"),
        ]
    )
    assert strongly_connected(graph) == [
        ["sessionflow.a.x", "sessionflow.b", "sessionflow.c"],
        ["sessionflow.d", "sessionflow.e"],
    ]
    cycle = a_cycle(graph, ["sessionflow.a.x", "sessionflow.b", "sessionflow.c"])
    assert [(e.importer, e.target, e.via) for e in cycle] == [
        ("sessionflow.a.x", "sessionflow.c", None),
        ("sessionflow.c", "sessionflow.b", None),
        ("sessionflow.b", "sessionflow.a.x", "sessionflow.a"),
    ]
    assert cycle[2].imp.statement == "import sessionflow.a"


def test_the_tree_is_read_whole() -> None:
    found = modules()
    for package in PACKAGE_DIRS:
        assert package in found, f"{package} has no __init__.py under {PACKAGE_DIRS[package]}/"
    assert "sessionflow.workflows.session" in found
    assert "sessionflow.agents.builtin.bash" in found
    edges = {(i.importer, i.target) for i in all_imports()}
    assert ("sessionflow.worker.build", "sessionflow.workflows.session") in edges


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = sorted(name for name in modules() if layer_of(name) is None)
    assert not unplaced, (
        f"modules in no layer of tests/test_layers.py (add them to GROUND or LAYER_RULES): "
        f"{unplaced}"
    )
    unknown = sorted({i.where() for i in all_imports() if i.target not in modules()})
    assert not unknown, "imports of sessionflow modules that do not exist:\n" + "\n".join(unknown)


def test_no_import_cycles() -> None:
    cycles = describe_cycles(import_graph(all_imports()))
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(cycles)


def test_layers_point_one_way() -> None:
    problems = layer_violations(all_imports())
    assert not problems, f"{len(problems)} import(s) against the layers:\n" + "\n".join(problems)


def test_the_old_name_check_sees_imports_and_specs() -> None:
    source = """
import workflows.session
from client import SessionClient
from sessionflow.client import SessionClient
from .agents import x
import clientele
load("agents.demo:demo_agent")
importlib.import_module("worker.main")
log = "worker.log"
"""
    assert old_name_uses(source, "t.py") == [
        "t.py:2: import workflows.session",
        "t.py:3: from client import SessionClient",
        "t.py:7: 'agents.demo:demo_agent' names the old package",
        "t.py:8: imports 'worker.main' by name",
    ]


def test_nothing_imports_the_old_top_level_names() -> None:
    uses: list[str] = []
    for path in our_python_files():
        relative = path.relative_to(REPO).as_posix()
        uses += old_name_uses(path.read_text(), relative)
    assert not uses, (
        f"the old top-level names {sorted(OLD_TOP_LEVEL)} are the user's own; "
        "import sessionflow.<name> instead:\n" + "\n".join(uses)
    )


if __name__ == "__main__":
    print(markdown_table())
