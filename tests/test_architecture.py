"""Imports point downward only (shared/design/ARCHITECTURE.md): the model library needs nothing of the project
above it, data readers do not know training, training does not know the evaluation, and no library package
imports Kedro. Read from the source (every import statement, function-level ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vlmo_pipeline"

#: package -> import prefixes it must never use
FORBIDDEN = {
    "models": (
        "vlmo_pipeline.data",
        "vlmo_pipeline.training",
        "vlmo_pipeline.evaluation",
        "vlmo_pipeline.pipelines",
        "kedro",
        "lightning",
    ),
    "data": ("vlmo_pipeline.training", "vlmo_pipeline.evaluation", "vlmo_pipeline.pipelines", "kedro", "lightning"),
    "training": ("vlmo_pipeline.evaluation", "vlmo_pipeline.pipelines", "kedro"),
    "evaluation": ("vlmo_pipeline.pipelines", "kedro"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_downward(package: str):
    offences = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for line, name in _imports(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN[package])
    ]
    assert offences == []
