"""The rooms keep their rules: no module imports the command line, and no module touches
another library's private names (the issue's grep, made exact with the AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted([*REPO.glob("study/**/*.py"), *REPO.glob("analysis/*.py"),
                  *REPO.glob("models/*.py"), *REPO.glob("search_spaces/*.py")])
OWN = {"self", "cls"}


def imports(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_names_of_other_libraries(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in OWN):
                bad.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            bad.append(f"{path.name}:{node.lineno} {node.arg}=")
    bad += [f"{path.name}: imports {m}" for m in imports(tree)
            if any(part.startswith("_") and not part.startswith("__") for part in m.split("."))
            and m.split(".")[0] in ("ray", "optuna", "polars", "pyarrow", "torch")]
    assert not bad


def test_no_module_imports_the_command_line():
    for path in SOURCES:
        if path.parent.name == "cli" and path.parent.parent.name == "study":
            continue
        assert "study.cli" not in imports(ast.parse(path.read_text(encoding="utf-8"))), path


def test_analysis_imports_nothing_of_study():
    for path in REPO.glob("analysis/*.py"):
        mods = imports(ast.parse(path.read_text(encoding="utf-8")))
        assert not [m for m in mods if m == "study" or m.startswith("study.")], path
