"""metrics.json shape, plots and report.md of the evaluation report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlmo_pipeline.evaluation.evaluate import recall_from_scores
from vlmo_pipeline.evaluation.metrics import retrieval_recall
from vlmo_pipeline.evaluation.report import (
    ITM_CHANCE,
    RECALL_KEYS,
    assemble_metrics,
    check_metrics_shape,
    write_report,
)


def _recalls(value: float) -> dict[str, float]:
    return {key: value for key in RECALL_KEYS}


def _metrics(by_family: dict | None = None, rerank: bool = False) -> dict:
    by_family = {"presence": 80.0, "count": 40.0} if by_family is None else by_family
    return assemble_metrics(
        retrieval={"coco": _recalls(40.0), "f30k": _recalls(30.0)},
        vqa={
            "score": 55.0,
            "score_shuffled_images": 31.0,
            "score_blank_images": 29.0,
            "by_type": {"yes/no": 70.0, "number": 35.0, "other": 50.0},
            "by_family": by_family,
        },
        nlvr2={"dev_acc": 70.0, "test_acc": 68.0, "dev_acc_shuffled_images": 52.0},
        itm={
            "acc_hard_negatives": 61.0,
            "acc_random_negatives": 83.0,
            "hard_negative_duplicate_rate": 2.0,
            "random_negative_duplicate_rate": 0.0,
        },
        chance={
            "retrieval": {"coco": _recalls(1.0), "f30k": _recalls(1.0)},
            "vqa": {
                "score": 20.0,
                "by_type": {"yes/no": 50.0, "number": 30.0, "other": 10.0},
                "by_family": {name: 25.0 for name in by_family},
            },
            "nlvr2": {"dev_acc": 50.0, "test_acc": 51.0},
            "itm": {"acc_hard_negatives": ITM_CHANCE, "acc_random_negatives": ITM_CHANCE},
        },
        model={"config": "vlmo_tiny"},
        data={
            "coco_test": {"images": 2},
            "vqa_question_counts": {
                "by_type": {"yes/no": 3, "number": 2, "other": 4},
                "by_family": {"presence": 3, "count": 2},
            },
        },
        timing={"retrieval_coco_dual_encoder_s": 1.5, "retrieval_coco_rerank_s": 4.0, "vqa_s": 2.0},
        retrieval_rerank={"k": 8, "coco": _recalls(45.0), "f30k": _recalls(33.0)} if rerank else None,
    )


def test_metrics_have_exactly_the_documented_shape():
    metrics = _metrics()
    assert set(metrics) == {"retrieval", "vqa", "nlvr2", "itm", "chance", "timing", "model", "data"}
    for section in (metrics, metrics["chance"]):
        assert set(section["retrieval"]) == {"coco", "f30k"}
        for scores in section["retrieval"].values():
            assert set(scores) == {"tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "rsum"}
    assert set(metrics["vqa"]) == {"score", "score_shuffled_images", "score_blank_images", "by_type", "by_family"}
    assert set(metrics["chance"]["vqa"]) == {"score", "by_type", "by_family"}
    assert set(metrics["nlvr2"]) == {"dev_acc", "test_acc", "dev_acc_shuffled_images"}
    assert set(metrics["chance"]["nlvr2"]) == {"dev_acc", "test_acc"}
    assert set(metrics["itm"]) == {
        "acc_hard_negatives",
        "acc_random_negatives",
        "hard_negative_duplicate_rate",
        "random_negative_duplicate_rate",
    }
    assert metrics["chance"]["itm"] == {"acc_hard_negatives": 50.0, "acc_random_negatives": 50.0}
    json.dumps(metrics)  # serialisable
    reranked = _metrics(rerank=True)
    assert list(reranked)[:2] == ["retrieval", "retrieval_rerank"]  # printed next to the dual encoder's recall
    assert reranked["retrieval_rerank"]["k"] == 8 and set(reranked["retrieval_rerank"]["coco"]) == set(RECALL_KEYS)


def test_shape_check_names_what_is_wrong():
    metrics = _metrics()
    del metrics["chance"]["nlvr2"]["test_acc"]
    with pytest.raises(ValueError, match=r"metrics\.chance\.nlvr2"):
        check_metrics_shape(metrics)
    metrics = _metrics()
    metrics["vqa"]["score"] = float("nan")
    with pytest.raises(ValueError, match=r"metrics\.vqa\.score"):
        check_metrics_shape(metrics)
    metrics = _metrics()
    del metrics["nlvr2"]["dev_acc_shuffled_images"]
    with pytest.raises(ValueError, match=r"metrics\.nlvr2"):
        check_metrics_shape(metrics)
    # the per-family keys follow the data: any names, no family at all, but only finite numbers
    check_metrics_shape(_metrics(by_family={"some family": 12.5}))
    check_metrics_shape(_metrics(by_family={}))
    metrics = _metrics()
    metrics["vqa"]["by_family"]["presence"] = float("inf")
    with pytest.raises(ValueError, match=r"metrics\.vqa\.by_family\.presence"):
        check_metrics_shape(metrics)
    metrics = _metrics()
    metrics["chance"]["vqa"]["by_type"]["number"] = "30"
    with pytest.raises(ValueError, match=r"metrics\.chance\.vqa\.by_type\.number"):
        check_metrics_shape(metrics)
    metrics = _metrics(rerank=True)
    del metrics["retrieval_rerank"]["f30k"]["rsum"]
    with pytest.raises(ValueError, match=r"metrics\.retrieval_rerank\.f30k"):
        check_metrics_shape(metrics)
    metrics = _metrics()
    metrics["unknown"] = {}
    with pytest.raises(ValueError, match="metrics keys"):
        check_metrics_shape(metrics)


def test_report_shows_the_image_controls_and_the_breakdowns(tmp_path):
    text = write_report(tmp_path, _metrics(rerank=True), {}, {}).read_text()
    assert "## Does the model look at the image?" in text
    assert "| VQA | VQA score | 55.0 | 31.0 | 29.0 | 20.0 |" in text
    assert "| NLVR2 | dev accuracy | 70.0 | 52.0 | n/a | 50.0 |" in text
    assert "| ITM (stage 3) | accuracy, hard negatives | 61.0 | n/a | n/a | 50.0 |" in text
    assert "| ITM (stage 3) | accuracy, random negatives | 83.0 | n/a | n/a | 50.0 |" in text
    assert "## VQA by answer type" in text and "| yes/no | 3 | 70.0 | 50.0 |" in text
    assert "## VQA by question family (demo world)" in text and "| count | 2 | 40.0 | 25.0 |" in text
    assert "| coco | ITM re-rank, top 8 | 45.0" in text and "ITM re-rank 4.0 s" in text
    # real VQAv2: no question matches a demo family, so no family table
    text = write_report(tmp_path / "real", _metrics(by_family={}), {}, {}).read_text()
    assert "question family" not in text
    assert "ITM re-rank, top" not in text  # no re-ranked recall without retrieval_rerank


def test_report_writes_plots_and_markdown(tmp_path):
    histories = {"stage1": [(0, 1.0), (1, 0.8), (2, 0.7)], "vqa": [(0, 5.0), (1, 3.0)], "empty": []}
    stages = {"stage1": {"global_step": 3, "first_loss": 1.0, "last_loss": 0.7, "seconds": 2.0}}
    report = write_report(tmp_path, _metrics(), histories, stages)
    text = report.read_text()
    assert "![Training loss curves](loss_curves.png)" in text and "| coco | model | 40.0" in text
    for name in ("loss_curves.png", "recall_at_k.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))
    assert "## Examples" not in text  # no gallery given: no example section, no dangling image link
    assert (tmp_path / "recall_at_k.csv").read_text().splitlines() == [
        "k,coco_i2t,coco_t2i,f30k_i2t,f30k_t2i,chance_coco_i2t,chance_coco_t2i,chance_f30k_i2t,chance_f30k_t2i",
        "1,40.0,40.0,30.0,30.0,1.0,1.0,1.0,1.0",
        "5,40.0,40.0,30.0,30.0,1.0,1.0,1.0,1.0",
        "10,40.0,40.0,30.0,30.0,1.0,1.0,1.0,1.0",
    ]


def test_recall_from_scores_matches_the_feature_based_recall():
    import torch

    torch.manual_seed(0)
    images, texts = torch.randn(6, 8), torch.randn(15, 8)
    text_to_image = torch.arange(15) % 6
    scores = images @ texts.t()
    expected = retrieval_recall(images, texts, text_to_image)
    assert recall_from_scores(scores, scores.t(), text_to_image) == pytest.approx(expected)


def test_dvc_metrics_show_prints_the_nested_metrics(tmp_path: Path):
    """metrics.json is the DVC metric file: every score, the image controls and the breakdowns (nested dicts, keys
    such as "yes/no") come out of `dvc metrics show`."""
    metrics = _metrics(rerank=True)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics.json\n")
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    shown = json.loads(run("dvc", "metrics", "show", "--json"))[""]["data"]["metrics.json"]["data"]
    for section in ("vqa", "nlvr2", "itm", "retrieval_rerank", "chance"):
        assert shown[section] == metrics[section], section
    table = run("dvc", "metrics", "show")
    for key in (
        "vqa.score_shuffled_images",
        "vqa.score_blank_images",
        "vqa.by_type.yes/no",
        "vqa.by_family.presence",
        "nlvr2.dev_acc_shuffled_images",
        "itm.acc_hard_negatives",
        "itm.acc_random_negatives",
        "itm.hard_negative_duplicate_rate",
        "retrieval_rerank.coco.tr_r1",
        "chance.itm.acc_hard_negatives",
        "chance.vqa.by_type.number",
        "timing.retrieval_coco_rerank_s",
    ):
        assert key in table, key
