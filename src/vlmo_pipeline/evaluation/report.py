"""The evaluation report: ``metrics.json`` in the project's fixed shape, PNG plots and a short ``report.md``.

``metrics.json`` (all scores in percent)::

    {"retrieval": {"coco": {"tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "rsum"}, "f30k": {...}},
     "vqa": {"score"},
     "nlvr2": {"dev_acc", "test_acc"},
     "chance": {same keys: random-ranking recall, majority-answer VQA score, majority-class NLVR2 accuracy},
     "model": {...}, "data": {...}}

Plots (matplotlib, Agg backend, no display needed): ``loss_curves.png`` (training loss of every stage/task from
the CSV logs) and ``recall_at_k.png`` (R@1/5/10 per dataset and direction next to chance); with a
:class:`~vlmo_pipeline.evaluation.gallery.Gallery`, also the example images of
:func:`~vlmo_pipeline.evaluation.gallery.write_gallery` (retrieval gallery, VQA and NLVR2 examples).
``recall_at_k.csv`` holds the same recall numbers as the bar plot, one row per K, for ``dvc plots``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from vlmo_pipeline.data.img2dataset_layout import atomic_write_text  # noqa: E402

if TYPE_CHECKING:
    from vlmo_pipeline.evaluation.gallery import Gallery

__all__ = [
    "RECALL_KEYS",
    "METRICS_SHAPE",
    "assemble_metrics",
    "check_metrics_shape",
    "plot_loss_curves",
    "plot_recall_bars",
    "recall_table_csv",
    "render_report_markdown",
    "save_figure",
    "write_report",
]

RECALL_KEYS: tuple[str, ...] = ("tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "rsum")

#: Required keys of the score sections (``model`` and ``data`` are free-form dictionaries).
METRICS_SHAPE: dict[str, Any] = {
    "retrieval": {"coco": RECALL_KEYS, "f30k": RECALL_KEYS},
    "vqa": ("score",),
    "nlvr2": ("dev_acc", "test_acc"),
}


def _scores_section(retrieval: Mapping[str, Mapping[str, float]], vqa_score: float, nlvr2_dev: float,
                    nlvr2_test: float) -> dict[str, Any]:
    return {
        "retrieval": {name: {key: float(retrieval[name][key]) for key in RECALL_KEYS} for name in ("coco", "f30k")},
        "vqa": {"score": float(vqa_score)},
        "nlvr2": {"dev_acc": float(nlvr2_dev), "test_acc": float(nlvr2_test)},
    }


def assemble_metrics(
    retrieval: Mapping[str, Mapping[str, float]],
    vqa_score: float,
    nlvr2_dev_acc: float,
    nlvr2_test_acc: float,
    chance_retrieval: Mapping[str, Mapping[str, float]],
    chance_vqa_score: float,
    chance_nlvr2_dev_acc: float,
    chance_nlvr2_test_acc: float,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """Put the scores and their baselines into the ``metrics.json`` shape (validated)."""
    metrics = _scores_section(retrieval, vqa_score, nlvr2_dev_acc, nlvr2_test_acc)
    metrics["chance"] = _scores_section(chance_retrieval, chance_vqa_score, chance_nlvr2_dev_acc, chance_nlvr2_test_acc)
    metrics["model"] = dict(model)
    metrics["data"] = dict(data)
    check_metrics_shape(metrics)
    return metrics


def check_metrics_shape(metrics: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first missing / extra key or non-finite number of a metrics dict."""
    expected_top = {"retrieval", "vqa", "nlvr2", "chance", "model", "data"}
    if set(metrics) != expected_top:
        raise ValueError(f"metrics keys {sorted(metrics)} != {sorted(expected_top)}")

    def check(section: Mapping[str, Any], shape: Mapping[str, Any], where: str) -> None:
        for key, sub_shape in shape.items():
            if key not in section:
                raise ValueError(f"{where}: key {key!r} missing")
            if isinstance(sub_shape, Mapping):
                if set(section[key]) != set(sub_shape):
                    raise ValueError(f"{where}.{key}: keys {sorted(section[key])} != {sorted(sub_shape)}")
                check(section[key], sub_shape, f"{where}.{key}")
                continue
            if set(section[key]) != set(sub_shape):
                raise ValueError(f"{where}.{key}: keys {sorted(section[key])} != {sorted(sub_shape)}")
            for name, value in section[key].items():
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{where}.{key}.{name} = {value!r} is not a finite number")

    check(metrics, METRICS_SHAPE, "metrics")
    if set(metrics["chance"]) != set(METRICS_SHAPE):
        raise ValueError(f"metrics.chance: keys {sorted(metrics['chance'])} != {sorted(METRICS_SHAPE)}")
    check(metrics["chance"], METRICS_SHAPE, "metrics.chance")


# ------------------------------------------------------------------------------------------------ plots
def plot_loss_curves(histories: Mapping[str, Sequence[tuple[int, float]]], path: str | os.PathLike) -> Path:
    """One panel per stage/task: training loss per step (raw and smoothed)."""
    names = [name for name, history in histories.items() if history]
    columns = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, names):
        steps = [step for step, _ in histories[name]]
        values = [value for _, value in histories[name]]
        axis.set_visible(True)
        axis.plot(steps, values, color="tab:blue", alpha=0.35, linewidth=1, label="per step")
        window = max(1, len(values) // 10)
        smoothed = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                    for i in range(len(values))]
        axis.plot(steps, smoothed, color="tab:blue", linewidth=2, label=f"mean of {window}")
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
        axis.legend(fontsize=7)
    figure.suptitle("Training loss of every stage and task")
    figure.tight_layout()
    return save_figure(figure, path)


def plot_recall_bars(metrics: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Grouped bars of R@1/5/10 (both directions, every retrieval dataset), chance level hatched beside them."""
    keys = [key for key in RECALL_KEYS if key != "rsum"]
    datasets = list(metrics["retrieval"])
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 3.5), squeeze=False)
    for axis, name in zip(axes.flat, datasets):
        positions = range(len(keys))
        model_values = [metrics["retrieval"][name][key] for key in keys]
        chance_values = [metrics["chance"]["retrieval"][name][key] for key in keys]
        axis.bar([p - 0.2 for p in positions], model_values, width=0.4, label="model", color="tab:green")
        axis.bar([p + 0.2 for p in positions], chance_values, width=0.4, label="chance", color="lightgray",
                 hatch="//")
        axis.set_xticks(list(positions), [key.replace("_r", " R@").upper().replace("TR", "I→T").replace("IR", "T→I")
                                          for key in keys])
        axis.set_ylim(0, 100)
        axis.set_ylabel("recall (%)")
        axis.set_title(f"{name} test retrieval")
        axis.legend()
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as ``path`` (format from its suffix) via a temporary sibling, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        figure.savefig(temporary, dpi=100)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------- markdown
def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(f"{cell:.1f}" if isinstance(cell, float) else str(cell) for cell in cells) + " |"


def render_report_markdown(metrics: Mapping[str, Any], stages: Mapping[str, Mapping[str, Any]],
                           plots: Mapping[str, str], sections: Sequence[str] = ()) -> str:
    """A short Markdown report: retrieval / VQA / NLVR2 tables against chance, stage losses, the plots, then the
    extra ``sections`` lines (the example gallery)."""
    lines = ["# VLMo evaluation report", ""]
    model = metrics.get("model", {})
    if model:
        lines += [f"Model: `{model.get('config', '?')}` ({model.get('parameters', '?')} parameters).", ""]
    lines += ["## Retrieval (test split, dual encoder, full image × caption matrix)", "",
              _row(["dataset", "", *RECALL_KEYS]), _row(["---"] * (len(RECALL_KEYS) + 2))]
    for name, scores in metrics["retrieval"].items():
        chance = metrics["chance"]["retrieval"][name]
        lines.append(_row([name, "model", *(scores[key] for key in RECALL_KEYS)]))
        lines.append(_row([name, "chance", *(chance[key] for key in RECALL_KEYS)]))
    lines += ["", "## VQA and NLVR2", "", _row(["task", "metric", "model", "baseline"]), _row(["---"] * 4),
              _row(["VQA", "VQA score", metrics["vqa"]["score"], metrics["chance"]["vqa"]["score"]]),
              _row(["NLVR2", "dev accuracy", metrics["nlvr2"]["dev_acc"], metrics["chance"]["nlvr2"]["dev_acc"]]),
              _row(["NLVR2", "test1 accuracy", metrics["nlvr2"]["test_acc"],
                    metrics["chance"]["nlvr2"]["test_acc"]]),
              "", "Baselines: expected recall of a random ranking; always the majority training answer (VQA) or "
              "label (NLVR2).", ""]
    if stages:
        lines += ["## Training", "", _row(["stage / task", "steps", "first loss", "last loss", "seconds"]),
                  _row(["---"] * 5)]
        for name, stage in stages.items():
            lines.append(_row([name, stage.get("global_step", "?"), _number(stage.get("first_loss")),
                               _number(stage.get("last_loss")), _number(stage.get("seconds"))]))
        lines += ["", "First / last loss: mean over the first / last fifth of the logged steps.", ""]
    for title, file_name in plots.items():
        lines += [f"![{title}]({file_name})", ""]
    lines += list(sections)
    return "\n".join(lines).rstrip("\n") + "\n"


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) else "n/a"


def recall_table_csv(metrics: Mapping[str, Any]) -> str:
    """Recall (percent) per K: columns ``k``, ``<dataset>_<i2t|t2i>`` and ``chance_<dataset>_<i2t|t2i>``.

    One row per K of ``RECALL_KEYS`` (1, 5, 10): the shape ``dvc plots`` draws as one line per column over K.
    """
    directions = (("i2t", "tr"), ("t2i", "ir"))
    columns = ["k"]
    for prefix in ("", "chance_"):
        columns += [f"{prefix}{name}_{direction}" for name in metrics["retrieval"] for direction, _ in directions]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    ks = [int(key[len("tr_r"):]) for key in RECALL_KEYS if key.startswith("tr_r")]
    for k in ks:
        row: list[Any] = [k]
        for section in (metrics["retrieval"], metrics["chance"]["retrieval"]):
            for name in metrics["retrieval"]:
                row += [round(float(section[name][f"{key}_r{k}"]), 4) for _, key in directions]
        writer.writerow(row)
    return buffer.getvalue()


def write_report(directory: str | os.PathLike, metrics: Mapping[str, Any],
                 histories: Mapping[str, Sequence[tuple[int, float]]],
                 stages: Mapping[str, Mapping[str, Any]], gallery: Gallery | None = None) -> Path:
    """Write ``loss_curves.png``, ``recall_at_k.png``, ``recall_at_k.csv``, the gallery PNGs (when ``gallery``
    has examples) and ``report.md`` (written last, linking every image relatively) into ``directory``."""
    from vlmo_pipeline.evaluation.gallery import write_gallery

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plots = {
        "Training loss curves": plot_loss_curves(histories, directory / "loss_curves.png").name,
        "Recall@K against chance": plot_recall_bars(metrics, directory / "recall_at_k.png").name,
    }
    atomic_write_text(directory / "recall_at_k.csv", recall_table_csv(metrics))
    sections = write_gallery(directory, gallery) if gallery is not None else []
    report = directory / "report.md"
    atomic_write_text(report, render_report_markdown(metrics, stages, plots, sections))
    return report
