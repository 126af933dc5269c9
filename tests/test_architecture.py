"""Imports point downward only (docs/architecture.md): the model library needs nothing of the project
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


def test_configuration_and_pipeline_registration_do_not_load_torch():
    """Kedro registers every pipeline at start-up, and the run configuration is parsed before any training: both
    must stay light (no torch, torchvision or Lightning), so `kedro run --pipeline=ingest_coco` and Kedro-Viz do
    not pay for the training stack. Checked in a fresh interpreter."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import vlmo_pipeline.training.config, vlmo_pipeline.training.runs, vlmo_pipeline.schema\n"
        "from vlmo_pipeline.pipeline_registry import register_pipelines\n"
        "register_pipelines()\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'lightning') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
