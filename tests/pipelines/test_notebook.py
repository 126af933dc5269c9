"""The exploration notebook executes top to bottom on a tiny demo run (catalog, Arrow shard, checkpoints)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO
from tests.pipelines.test_kedro_training_pipelines import _run, _tiny_params
from vlmo_pipeline.pipeline_registry import TRAINING_PIPELINES


@pytest.mark.slow
def test_exploration_notebook_executes(kedro_project: Path, monkeypatch):
    monkeypatch.chdir(kedro_project)
    params = _tiny_params()
    for pipeline in ("demo_data", "ingest", *TRAINING_PIPELINES):
        _run(kedro_project, pipeline, params)

    notebooks = kedro_project / "notebooks"
    notebooks.mkdir()
    shutil.copy(REPO / "notebooks" / "explore_demo.ipynb", notebooks)
    notebook = nbformat.read(notebooks / "explore_demo.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(notebooks)}}
    ).execute()

    outputs = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "rows per split" in outputs and "R@1" in outputs and "answered correctly" in outputs
