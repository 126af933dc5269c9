"""Node of the `evaluate` pipeline: parameters → `EvaluationConfig` → `run_evaluation`, then the report writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.runs import FINETUNING_RUNS, PRETRAINING_RUNS, RUNS

#: The models the evaluation scores (their run names are the evaluation's model keys): every fine-tune's, and
#: stage 3's, the only one that keeps the ITM head: the held-out ITM accuracy and the re-ranking of the
#: fine-tuned dual encoders' top-k (`rerank_k`).
EVALUATED_RUNS = (*FINETUNING_RUNS, PRETRAINING_RUNS[-1])
#: The Arrow datasets it reads: those of the fine-tunes, in their order.
EVALUATED_DATASETS = tuple(dict.fromkeys(name for run in FINETUNING_RUNS for name in run.datasets))
#: Training summaries the node receives, in chain order (names of the `<name>_training_summary` datasets).
TRAINED_RUNS = tuple(run.name for run in RUNS)


def evaluate_models(params: dict[str, Any], *directories_then_summaries: Any) -> tuple[dict[str, Any], Any]:
    """Return the metrics dictionary (→ `metrics.json`) and a writer of the report directory (plots, example
    gallery, recall_at_k.csv and report.md).

    Inputs after the parameters, in order: the model directory of each of :data:`EVALUATED_RUNS`, the Arrow folder
    of each of :data:`EVALUATED_DATASETS`, the training summary of each of :data:`TRAINED_RUNS`."""
    # Deferred imports (torch, Lightning, matplotlib): Kedro imports every node module at start-up (see training.node).
    from vlmo_pipeline.evaluation.report import write_report
    from vlmo_pipeline.evaluation.suite import EvaluationConfig, run_evaluation
    from vlmo_pipeline.training.export import loss_history

    config = EvaluationConfig.from_dict(params)
    models, rest = directories_then_summaries[: len(EVALUATED_RUNS)], directories_then_summaries[len(EVALUATED_RUNS) :]
    datasets, summaries = rest[: len(EVALUATED_DATASETS)], rest[len(EVALUATED_DATASETS) :]
    stages = dict(zip(TRAINED_RUNS, summaries, strict=True))
    result = run_evaluation(
        config,
        model_dirs={run.name: Path(directory) for run, directory in zip(EVALUATED_RUNS, models, strict=True)},
        dataset_dirs={name: Path(directory) for name, directory in zip(EVALUATED_DATASETS, datasets, strict=True)},
        stage_summaries=stages,
    )
    metrics = result.metrics
    histories = {name: loss_history(Path(summary["log_csv"]).parent) for name, summary in stages.items()}

    def write(directory: Path) -> None:
        write_report(directory, metrics, histories, stages, gallery=result.gallery)

    return metrics, write
