"""The README's "Coming from experimental-agent or VibeKit" table cites tests: each must
exist, so the mapping cannot claim a proof that is gone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CITED = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_test_the_mapping_cites_exists() -> None:
    table = section("Coming from experimental-agent or VibeKit")
    cited = CITED.findall(table)
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # no header
    assert len(rows) >= 17
    assert all(CITED.search(row) for row in rows), "every row names its test"
    for path, name in cited:
        tree = ast.parse((REPO / path).read_text())
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert name in defined, f"README cites {path}::{name}, which does not exist"
