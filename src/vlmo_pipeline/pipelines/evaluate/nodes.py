"""Node of the `evaluate` pipeline: parameters → `EvaluationConfig` → `run_evaluation`, then the report writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.runs import RUNS

#: Training summaries the node receives, in chain order (names of the `<name>_training_summary` datasets).
TRAINED_RUNS = tuple(run.name for run in RUNS)


def evaluate_models(
    retrieval_coco_model: Path,
    retrieval_f30k_model: Path,
    vqa_model: Path,
    nlvr2_model: Path,
    pretrained_model: Path,
    coco_arrow: Path,
    f30k_arrow: Path,
    vqav2_arrow: Path,
    nlvr2_arrow: Path,
    params: dict[str, Any],
    *training_summaries: dict[str, Any],
) -> tuple[dict[str, Any], Any]:
    """Return the metrics dictionary (→ `metrics.json`) and a writer of the report directory (plots, example
    gallery, recall_at_k.csv and report.md).

    `pretrained_model` is the stage-3 model: the only one that keeps the ITM head, it gives the held-out ITM
    accuracy and re-ranks the fine-tuned dual encoders' top-k (`rerank_k`)."""
    # Deferred imports (torch, Lightning, matplotlib): Kedro imports every node module at start-up (see training.node).
    from vlmo_pipeline.evaluation.report import write_report
    from vlmo_pipeline.evaluation.suite import EvaluationConfig, run_evaluation
    from vlmo_pipeline.training.runner import loss_history

    config = EvaluationConfig.from_dict(params)
    stages = dict(zip(TRAINED_RUNS, training_summaries))
    result = run_evaluation(
        config,
        model_dirs={
            "retrieval_coco": retrieval_coco_model,
            "retrieval_f30k": retrieval_f30k_model,
            "vqa": vqa_model,
            "nlvr2": nlvr2_model,
            "stage3": pretrained_model,
        },
        dataset_dirs={"coco": coco_arrow, "f30k": f30k_arrow, "vqav2": vqav2_arrow, "nlvr2": nlvr2_arrow},
        stage_summaries=stages,
    )
    metrics = result.metrics
    histories = {name: loss_history(Path(summary["log_csv"]).parent) for name, summary in stages.items()}

    def write(directory: Path) -> None:
        write_report(directory, metrics, histories, stages, gallery=result.gallery)

    return metrics, write
