"""`python -m vlmo_pipeline.ablation` (`make ablation`) on a scratch Kedro project over the tiny world.

The project's conf/base is copied; conf/local points the Arrow and vocabulary catalog entries at the tiny world and
shrinks every training section to two batch-4 steps (whole sections: Kedro's local environment replaces a base
section). The demo's stage 1 is trained by a real `kedro run --pipeline=pretrain_stage1` session; the ablation then
trains and evaluates `no_stage2` for real and must write its table, its variant folder, and nothing under
data/06_models or data/08_reporting/<run>. The slow test runs the whole demo chain through Kedro and every variant.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from safetensors import safe_open

from tests.conftest import REPO
from tests.training.tiny_training_world import tiny_world  # noqa: F401  (fixture)
from vlmo_pipeline import ablation
from vlmo_pipeline.evaluation.report import check_metrics_shape

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY_RUN = {
    "data": {"batch_size": 4},
    "optim": {"warmup": 1},
    "trainer": {"max_steps": 2, "log_every_n_steps": 1, "progress_bar": False, "accelerator": "cpu"},
}


def _deep_update(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        merged[key] = _deep_update(merged.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


@pytest.fixture
def project(kedro_project: Path, tiny_world: Path, monkeypatch) -> Path:
    """The scratch project, cwd, with conf/local as described in the module docstring."""
    local = kedro_project / "conf" / "local"
    catalog = {
        "{name}_arrow": {
            "type": "vlmo_pipeline.datasets.DirectoryDataset",
            "path": str(tiny_world / "{name}"),
            "required_file": "manifest.json",
        },
        "vocab": {
            "type": "vlmo_pipeline.datasets.DirectoryDataset",
            "path": str(tiny_world.parent / "vocab"),
            "required_file": "vocab.txt",
        },
    }
    (local / "catalog.yml").write_text(yaml.safe_dump(catalog))
    params = {}
    for section in ablation.RUN_NAMES:
        base = yaml.safe_load((REPO / "conf" / "base" / f"parameters_{section}.yml").read_text())[section]
        params[section] = _deep_update(base, TINY_RUN)
    base = yaml.safe_load((REPO / "conf" / "base" / "parameters_evaluate.yml").read_text())["evaluate"]
    params["evaluate"] = _deep_update(base, {"batch_size": 16, "device": "cpu", "rerank_k": 2})
    (local / "parameters_tiny.yml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(kedro_project)
    return kedro_project


def _kedro_run(project: Path, pipeline: str) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_name=pipeline)


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``roots``: (size, mtime) by path, to show nothing was written there."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for root in roots
        if root.exists()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _demo_outputs(project: Path) -> list[Path]:
    data = project / "data"
    return [data / "06_models"] + [data / "08_reporting" / run for run in ablation.RUN_NAMES.values()]


def _tensor_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}


def test_one_variant_end_to_end_never_touches_the_demo(project: Path):
    _kedro_run(project, "pretrain_stage1")  # the demo's stage 1 (data/06_models/stage1)
    data = project / "data"
    before = _snapshot(*_demo_outputs(project))
    assert any("06_models/stage1/model.safetensors" in path for path in before)

    assert ablation.main(["--variants", "no_stage2"]) == 0

    assert _snapshot(*_demo_outputs(project)) == before, "the ablation wrote into the demo's models or reports"
    root = data / "09_ablation" / "no_stage2"
    for run in ("stage3", "retrieval_coco", "retrieval_f30k", "vqa", "nlvr2"):
        summary = json.loads((root / "models" / run / "training_summary.json").read_text())
        assert summary["global_step"] == 2, f"{run}: conf/local's two steps were not used"
        assert summary["run_config"]["output_dir"] == f"data/09_ablation/no_stage2/models/{run}"
        assert summary["run_config"]["seed"] == 0
        assert (root / "reports" / run / "metrics.csv").is_file()
    assert not (root / "models" / "stage2").exists()  # stage 2 is the one left out
    stage3 = json.loads((root / "models" / "stage3" / "training_summary.json").read_text())
    assert stage3["run_config"]["init"] == "data/06_models/stage1"  # the demo's stage-1 model, via the catalog
    metrics = json.loads((root / "metrics.json").read_text())
    check_metrics_shape(metrics)
    assert set(metrics["model"]["stages"]) == {"stage1", "stage3", "retrieval_coco", "retrieval_f30k", "vqa", "nlvr2"}

    table = json.loads((data / "08_reporting" / "ablation.json").read_text())
    assert [row["variant"] for row in table["rows"]] == ["full", "no_stage2"]
    full, row = table["rows"]
    assert all(full[key] is None for key in ablation.TABLE_COLUMNS)  # no demo metrics.json in this project
    assert any("metrics.json is missing" in note for note in full["notes"])
    assert row["skipped"] == ["stage2"]
    for key, (_, path) in ablation.TABLE_COLUMNS.items():
        value = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        assert row[key] == value, key  # the table shows what the variant's metrics.json holds (None: n/a)
    assert row["stage3_last_loss"] == pytest.approx(stage3["last_loss"])
    assert row["wall_s"] > 0 and row["resumed_runs"] == []
    assert table["runs"]["stage3"] == {"seed": 0, "max_steps": 2, "batch_size": 4}

    text = (data / "08_reporting" / "ablation.md").read_text()
    assert "| `full` | - |" in text and "| `no_stage2` | stage2 |" in text
    assert "| stage3 | 0 | 2 | 4 |" in text
    assert not list((data / "08_reporting").glob(".*tmp*")) and not list(root.glob(".*tmp*"))

    # A fresh model is stage 1's architecture: the same config and tensors as the demo's stage-1 model.
    setup = ablation.load_setup()
    fresh = ablation.build_fresh_model(
        setup, setup.load("vocab") / "vocab.txt", data / "09_ablation" / "fresh", skipped=["pretrain_stage1"]
    )
    stage1 = data / "06_models" / "stage1"
    assert json.loads((fresh / "config.json").read_text()) == json.loads((stage1 / "config.json").read_text())
    assert _tensor_shapes(fresh) == _tensor_shapes(stage1)
    assert (fresh / "vocab.txt").read_bytes() == (stage1 / "vocab.txt").read_bytes()
    with pytest.raises(ValueError, match="would write into the demo"):
        ablation.build_fresh_model(setup, setup.load("vocab") / "vocab.txt", stage1, skipped=["pretrain_stage1"])


@pytest.mark.slow
def test_every_variant_next_to_the_full_chain(project: Path):
    for pipeline in (
        "pretrain_stage1",
        "pretrain_stage2",
        "pretrain_stage3",
        "finetune_retrieval_coco",
        "finetune_retrieval_f30k",
        "finetune_vqa",
        "finetune_nlvr2",
        "evaluate",
    ):
        _kedro_run(project, pipeline)
    data = project / "data"
    before = _snapshot(*_demo_outputs(project))

    assert ablation.main([]) == 0

    assert _snapshot(*_demo_outputs(project)) == before
    table = json.loads((data / "08_reporting" / "ablation.json").read_text())
    assert [row["variant"] for row in table["rows"]] == ["full", "no_stage1", "no_stage2", "no_stage1_no_stage2"]
    demo = json.loads((data / "08_reporting" / "metrics.json").read_text())
    full = table["rows"][0]
    assert full["coco_tr_r1"] == demo["retrieval"]["coco"]["tr_r1"] and full["vqa_score"] == demo["vqa"]["score"]
    assert full["notes"] == []  # same seeds and steps as the demo's models
    chain_stage3 = json.loads((data / "06_models" / "stage3" / "config.json").read_text())
    for row in table["rows"][1:]:
        root = data / "09_ablation" / row["variant"]
        check_metrics_shape(json.loads((root / "metrics.json").read_text()))
        assert (root / "models" / "stage2").exists() == (row["variant"] == "no_stage1")
        # stage 3 trains the chain's architecture, whatever it started from
        assert json.loads((root / "models" / "stage3" / "config.json").read_text()) == chain_stage3
    text = (data / "08_reporting" / "ablation.md").read_text()
    assert "| `no_stage1_no_stage2` | stage1, stage2 |" in text
