"""Every training pipeline (vocab → three stages → four fine-tunes → evaluate), each run through a real Kedro
session on a tiny world with a step or two per stage, as `kedro run --pipeline=<name>` would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from vlmo_pipeline.evaluation.report import check_metrics_shape
from vlmo_pipeline.pipeline_registry import TRAINING_PIPELINES, register_pipelines

REPO = Path(__file__).resolve().parents[2]
RUNS = {  # pipeline → parameters section / model folder
    "pretrain_stage1": "stage1",
    "pretrain_stage2": "stage2",
    "pretrain_stage3": "stage3",
    "finetune_retrieval_coco": "retrieval_coco",
    "finetune_retrieval_f30k": "retrieval_f30k",
    "finetune_vqa": "vqa",
    "finetune_nlvr2": "nlvr2",
}


def _tiny_params() -> dict:
    params: dict = {
        "demo_data": {"n_images": 8, "show_progress": False},
        "ingest": {"workers": 0, "min_answer_count": 1},
        "vocab": {"vocab_size": 400},
        "evaluate": {"batch_size": 16},
    }
    for pipeline in RUNS:
        params[pipeline] = {
            "data": {"batch_size": 4},
            "optim": {"warmup": 1},
            "trainer": {"max_steps": 2, "progress_bar": False, "log_every_n_steps": 1},
        }
    return params


def _run(project: Path, pipeline: str, params: dict) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_name=pipeline)


def test_registry_has_the_training_chain():
    pipelines = register_pipelines()
    assert set(TRAINING_PIPELINES) <= set(pipelines)
    default_nodes = {node.name for node in pipelines["__default__"].nodes}
    assert {
        "generate_demo_world",
        "build_vocab",
        "pretrain_stage1",
        "pretrain_stage3",
        "finetune_nlvr2",
        "evaluate_models",
    } <= default_nodes
    # Each stage reads the previous stage's checkpoint dataset (the chain Kedro-Viz shows).
    inputs = {node.name: set(node.inputs) for node in pipelines["__default__"].nodes}
    assert "vocab" in inputs["pretrain_stage1"]
    assert "stage1_model" in inputs["pretrain_stage2"]
    assert "stage2_model" in inputs["pretrain_stage3"]
    for task in ("finetune_retrieval_coco", "finetune_retrieval_f30k", "finetune_vqa", "finetune_nlvr2"):
        assert "pretrained_model" in inputs[task]
    assert {"retrieval_coco_model", "retrieval_f30k_model", "vqa_model", "nlvr2_model"} <= inputs["evaluate_models"]
    assert "pretrained_model" in inputs["evaluate_models"]  # stage 3's ITM head: held-out ITM, ITM re-rank


@pytest.mark.slow
def test_every_training_pipeline_runs_through_kedro(kedro_project: Path, monkeypatch):
    monkeypatch.chdir(kedro_project)
    params = _tiny_params()
    _run(kedro_project, "demo_data", params)
    _run(kedro_project, "ingest", params)
    for pipeline in TRAINING_PIPELINES:
        _run(kedro_project, pipeline, params)

    data = kedro_project / "data"
    assert (data / "05_model_input" / "vocab" / "vocab.txt").is_file()
    for run in RUNS.values():
        model_dir = data / "06_models" / run
        assert (model_dir / "model.safetensors").is_file(), f"{run} did not write its model"
        assert (model_dir / "lightning" / "last.ckpt").is_file(), f"{run} has no last.ckpt to resume from"
        summary = json.loads((data / "08_reporting" / run / "training_summary.json").read_text())
        assert summary["global_step"] == 2
        assert (data / "08_reporting" / run / "metrics.csv").is_file()
    assert (data / "06_models" / "vqa" / "answer_vocab.json").is_file()

    metrics = json.loads((data / "08_reporting" / "metrics.json").read_text())
    check_metrics_shape(metrics)
    assert metrics["model"]["stages"]["stage3"]["global_step"] == 2
    report = data / "08_reporting" / "report"
    assert {"report.md", "loss_curves.png", "recall_at_k.png"} <= {p.name for p in report.iterdir()}

    # A second run of a finished stage resumes from its last.ckpt instead of training again.
    _run(kedro_project, "pretrain_stage2", params)
    summary = json.loads((data / "08_reporting" / "stage2" / "training_summary.json").read_text())
    assert summary["resumed_from"] and summary["resumed_from"].endswith("last.ckpt")
