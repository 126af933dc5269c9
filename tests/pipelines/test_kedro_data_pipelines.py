"""The demo_data and ingest pipelines, run through a real Kedro session on a tiny world."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from vlmo_pipeline.data.registry import DATASETS as RAW_DATASETS

TINY_WORLD = {"demo_data": {"n_images": 16, "show_progress": False}, "ingest": {"workers": 0}}


def _run(project: Path, pipeline: str, params: dict) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_name=pipeline)


def test_registry_lists_every_data_pipeline():
    from vlmo_pipeline.pipeline_registry import register_pipelines

    names = set(register_pipelines())
    expected = {"demo_data", "ingest", "__default__"} | {f"ingest_{name}" for name in RAW_DATASETS}
    assert expected <= names


def test_registering_the_pipelines_imports_no_training_stack():
    # Kedro imports every node module at start-up: torch / torchvision / Lightning / matplotlib there would cost
    # each `kedro run` (the data pipelines too) and Kedro-Viz several seconds; the training nodes defer them.
    code = (
        "import sys\n"
        "from vlmo_pipeline.pipeline_registry import register_pipelines\n"
        "register_pipelines()\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'lightning', 'matplotlib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_demo_data_then_ingest_fills_every_manifest(kedro_project: Path, monkeypatch):
    monkeypatch.chdir(kedro_project)
    _run(kedro_project, "demo_data", TINY_WORLD)
    for name in RAW_DATASETS:
        tree = kedro_project / "data" / "01_raw" / name
        assert (tree / ".demo_world.json").exists(), f"{tree} was not generated"
    assert not (kedro_project / "data" / "02_intermediate" / "demo_world_staging").exists() or not any(
        (kedro_project / "data" / "02_intermediate" / "demo_world_staging").iterdir()
    )

    _run(kedro_project, "ingest", TINY_WORLD)
    for name in RAW_DATASETS:
        manifest_path = kedro_project / "data" / "03_primary" / name / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        assert manifest["dataset"] == name
        assert sum(manifest["splits"].values()) > 0, f"{name} ingested no rows"
        for shard in manifest["shards"]:
            assert (manifest_path.parent / shard["file"]).exists()


def test_single_dataset_pipeline_runs_alone(kedro_project: Path, monkeypatch):
    monkeypatch.chdir(kedro_project)
    _run(kedro_project, "demo_data", TINY_WORLD)
    _run(kedro_project, "ingest_nlvr2", TINY_WORLD)
    primary = kedro_project / "data" / "03_primary"
    assert [p.name for p in primary.iterdir() if p.is_dir()] == ["nlvr2"]


def test_missing_raw_tree_is_a_clear_error(kedro_project: Path, monkeypatch):
    monkeypatch.chdir(kedro_project)
    with pytest.raises(Exception, match=r"data/01_raw/coco.*does not exist.*demo_data"):
        _run(kedro_project, "ingest_coco", TINY_WORLD)


def test_demo_data_refuses_to_overwrite_real_data(kedro_project: Path, monkeypatch):
    monkeypatch.chdir(kedro_project)
    real = kedro_project / "data" / "01_raw" / "coco"
    real.mkdir(parents=True)
    (real / "precious.txt").write_text("a user's real dataset")
    with pytest.raises(Exception, match="refusing to replace"):
        _run(kedro_project, "demo_data", TINY_WORLD)
    assert (real / "precious.txt").read_text() == "a user's real dataset"


@pytest.mark.slow
def test_kedro_cli_accepts_the_documented_spelling(kedro_project: Path):
    """`kedro run --pipeline=<name>` (singular, as the README writes it) works in a subprocess."""
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "run", "--pipeline=demo_data", "--params=demo_data.n_images=8,demo_data.show_progress=false"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "deprecated" not in result.stderr, "the project's `run` should accept --pipeline without a warning"
    assert (kedro_project / "data" / "01_raw" / "coco" / ".demo_world.json").exists()
