"""metrics.json shape, plots and report.md of the evaluation report."""

from __future__ import annotations

import json

import pytest

from vlmo_pipeline.evaluation.evaluate import recall_from_scores
from vlmo_pipeline.evaluation.metrics import retrieval_recall
from vlmo_pipeline.evaluation.report import RECALL_KEYS, assemble_metrics, check_metrics_shape, write_report


def _recalls(value: float) -> dict[str, float]:
    return {key: value for key in RECALL_KEYS}


def _metrics() -> dict:
    return assemble_metrics(
        retrieval={"coco": _recalls(40.0), "f30k": _recalls(30.0)},
        vqa_score=55.0, nlvr2_dev_acc=70.0, nlvr2_test_acc=68.0,
        chance_retrieval={"coco": _recalls(1.0), "f30k": _recalls(1.0)},
        chance_vqa_score=20.0, chance_nlvr2_dev_acc=50.0, chance_nlvr2_test_acc=51.0,
        model={"config": "vlmo_tiny"}, data={"coco_test": {"images": 2}},
    )


def test_metrics_have_exactly_the_documented_shape():
    metrics = _metrics()
    assert set(metrics) == {"retrieval", "vqa", "nlvr2", "chance", "model", "data"}
    for section in (metrics, metrics["chance"]):
        assert set(section["retrieval"]) == {"coco", "f30k"}
        for scores in section["retrieval"].values():
            assert set(scores) == {"tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "rsum"}
        assert set(section["vqa"]) == {"score"}
        assert set(section["nlvr2"]) == {"dev_acc", "test_acc"}
    json.dumps(metrics)  # serialisable


def test_shape_check_names_what_is_wrong():
    metrics = _metrics()
    del metrics["chance"]["nlvr2"]["test_acc"]
    with pytest.raises(ValueError, match=r"metrics\.chance\.nlvr2"):
        check_metrics_shape(metrics)
    metrics = _metrics()
    metrics["vqa"]["score"] = float("nan")
    with pytest.raises(ValueError, match=r"metrics\.vqa\.score"):
        check_metrics_shape(metrics)


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
