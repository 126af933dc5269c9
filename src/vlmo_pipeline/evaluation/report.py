"""The evaluation report: ``metrics.json`` in the project's fixed shape, PNG plots and a short ``report.md``.

(About 520 lines: the fixed shape of ``metrics.json``, its checker and the report that prints it are one
contract and change together.)

``metrics.json`` (all scores in percent)::

    {"retrieval": {"coco": {"tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "rsum"}, "f30k": {...}},
     "retrieval_rerank": {"k", "coco": {...}, "f30k": {...}},   # only with rerank_k > 0: ITM re-ranked recall
     "vqa": {"score", "score_shuffled_images", "score_blank_images",
             "by_type": {"yes/no", "number", "other"}, "by_family": {<question family>: score, ...}},
     "nlvr2": {"dev_acc", "test_acc", "dev_acc_shuffled_images"},
     "itm": {"acc_hard_negatives", "acc_random_negatives", "hard_negative_duplicate_rate",
             "random_negative_duplicate_rate"},
     "chance": {"retrieval": random-ranking recall, "vqa": {"score", "by_type", "by_family"}: majority answer
                (overall / of the answer type / of the family), "nlvr2": {"dev_acc", "test_acc"}: majority class,
                "itm": {"acc_hard_negatives", "acc_random_negatives"}: 50},
     "timing": {<part>_s: seconds}, "model": {...}, "data": {...}}

``by_type`` / ``by_family`` hold the groups present in the data (``by_family`` is empty on real VQAv2, whose
questions match no demo-world family); :func:`check_metrics_shape` checks their values, not their keys.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from vlmo_pipeline.files import atomic_write_text, atomic_write_via  # noqa: E402

if TYPE_CHECKING:
    from vlmo_pipeline.evaluation.gallery import Gallery

__all__ = [
    "RECALL_KEYS",
    "METRICS_SHAPE",
    "CHANCE_SHAPE",
    "ITM_CHANCE",
    "assemble_metrics",
    "check_metrics_shape",
    "plot_loss_curves",
    "plot_recall_bars",
    "recall_table_csv",
    "render_report_markdown",
    "parameter_table_links",
    "save_figure",
    "write_report",
]

RECALL_KEYS: tuple[str, ...] = ("tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "rsum")
#: accuracy (percent) of guessing on the balanced held-out ITM decisions
ITM_CHANCE = 50.0


class _Leaf:
    """Shape marker: ``NUMBER`` (one finite number) or ``NUMBERS`` (a dict of finite numbers, any keys)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NUMBER, NUMBERS = _Leaf("NUMBER"), _Leaf("NUMBERS")

#: Required keys of the score sections. A tuple lists the keys of a dict of numbers, a dict nests,
#: ``NUMBERS`` is a dict of numbers whose keys depend on the data.
METRICS_SHAPE: dict[str, Any] = {
    "retrieval": {"coco": RECALL_KEYS, "f30k": RECALL_KEYS},
    "vqa": {
        "score": NUMBER,
        "score_shuffled_images": NUMBER,
        "score_blank_images": NUMBER,
        "by_type": NUMBERS,
        "by_family": NUMBERS,
    },
    "nlvr2": ("dev_acc", "test_acc", "dev_acc_shuffled_images"),
    "itm": (
        "acc_hard_negatives",
        "acc_random_negatives",
        "hard_negative_duplicate_rate",
        "random_negative_duplicate_rate",
    ),
}
#: Keys of ``metrics["chance"]``: the baselines of the scores that have one.
CHANCE_SHAPE: dict[str, Any] = {
    "retrieval": {"coco": RECALL_KEYS, "f30k": RECALL_KEYS},
    "vqa": {"score": NUMBER, "by_type": NUMBERS, "by_family": NUMBERS},
    "nlvr2": ("dev_acc", "test_acc"),
    "itm": ("acc_hard_negatives", "acc_random_negatives"),
}
#: Sections that only some runs have (``retrieval_rerank``: ``rerank_k > 0``).
OPTIONAL_SHAPE: dict[str, Any] = {
    "retrieval_rerank": {"k": NUMBER, "coco": RECALL_KEYS, "f30k": RECALL_KEYS},
}
#: Free-form sections: ``timing`` (seconds per part, numbers), ``model`` and ``data`` (anything JSON).
FREE_SECTIONS = ("timing", "model", "data")


def _numbers(values: Mapping[str, Any], shape: Any) -> Any:
    """``values`` cut to ``shape``, every number a float except plain ints (counts such as ``k``)."""
    if shape is NUMBER:
        return values if type(values) is int else float(values)
    if shape is NUMBERS:
        return {str(key): float(value) for key, value in values.items()}
    if isinstance(shape, Mapping):
        return {key: _numbers(values[key], sub_shape) for key, sub_shape in shape.items()}
    return {key: float(values[key]) for key in shape}


def assemble_metrics(
    retrieval: Mapping[str, Mapping[str, float]],
    vqa: Mapping[str, Any],
    nlvr2: Mapping[str, float],
    itm: Mapping[str, float],
    chance: Mapping[str, Any],
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    timing: Mapping[str, float] | None = None,
    retrieval_rerank: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Put the scores, their baselines and the timings into the ``metrics.json`` shape (validated).

    Every section is given as a dict with (at least) the keys of :data:`METRICS_SHAPE` (``chance``: of
    :data:`CHANCE_SHAPE`); extra keys are dropped. ``retrieval_rerank`` (``k`` and the re-ranked recall of every
    retrieval dataset) is written only when given.
    """
    sections = {"retrieval": retrieval, "retrieval_rerank": retrieval_rerank, "vqa": vqa, "nlvr2": nlvr2, "itm": itm}
    shapes = {**METRICS_SHAPE, **OPTIONAL_SHAPE}
    metrics: dict[str, Any] = {
        name: _numbers(values, shapes[name]) for name, values in sections.items() if values is not None
    }  # re-ranked recall right after the dual encoder's
    metrics["chance"] = _numbers(chance, CHANCE_SHAPE)
    metrics["timing"] = {key: float(value) for key, value in (timing or {}).items()}
    metrics["model"] = dict(model)
    metrics["data"] = dict(data)
    check_metrics_shape(metrics)
    return metrics


def _check_number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} = {value!r} is not a finite number")


def _check_section(section: Any, shape: Any, where: str) -> None:
    if shape is NUMBER:
        _check_number(section, where)
        return
    if not isinstance(section, Mapping):
        raise ValueError(f"{where} = {section!r} is not a dictionary")
    if shape is NUMBERS:
        for name, value in section.items():
            _check_number(value, f"{where}.{name}")
        return
    keys = set(shape)
    if set(section) != keys:
        raise ValueError(f"{where}: keys {sorted(section)} != {sorted(keys)}")
    sub_shapes = shape if isinstance(shape, Mapping) else dict.fromkeys(shape, NUMBER)
    for name, sub_shape in sub_shapes.items():
        _check_section(section[name], sub_shape, f"{where}.{name}")


def check_metrics_shape(metrics: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first missing / extra key or non-finite number of a metrics dict."""
    required = set(METRICS_SHAPE) | {"chance"} | set(FREE_SECTIONS)
    allowed = required | set(OPTIONAL_SHAPE)
    if not required <= set(metrics) <= allowed:
        raise ValueError(f"metrics keys {sorted(metrics)}: need {sorted(required)}, may add {sorted(OPTIONAL_SHAPE)}")
    for name, shape in METRICS_SHAPE.items():
        _check_section(metrics[name], shape, f"metrics.{name}")
    for name, shape in OPTIONAL_SHAPE.items():
        if name in metrics:
            _check_section(metrics[name], shape, f"metrics.{name}")
    _check_section(metrics["chance"], CHANCE_SHAPE, "metrics.chance")
    _check_section(metrics["timing"], NUMBERS, "metrics.timing")


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
        smoothed = [
            sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i in range(len(values))
        ]
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
        axis.bar([p + 0.2 for p in positions], chance_values, width=0.4, label="chance", color="lightgray", hatch="//")
        axis.set_xticks(
            list(positions),
            [key.replace("_r", " R@").upper().replace("TR", "I→T").replace("IR", "T→I") for key in keys],
        )
        axis.set_ylim(0, 100)
        axis.set_ylabel("recall (%)")
        axis.set_title(f"{name} test retrieval")
        axis.legend()
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as ``path`` (format from its suffix) via a temporary sibling, then close it."""
    path = Path(path)
    try:
        # the temporary name ends in .tmp, so the format comes from the final name
        atomic_write_via(
            path, lambda temporary: figure.savefig(temporary, dpi=100, format=path.suffix[1:]), parents=True
        )
    finally:
        plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------- markdown
def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(f"{cell:.1f}" if isinstance(cell, float) else str(cell) for cell in cells) + " |"


def render_report_markdown(
    metrics: Mapping[str, Any],
    stages: Mapping[str, Mapping[str, Any]],
    plots: Mapping[str, str],
    sections: Sequence[str] = (),
    parameter_tables: Mapping[str, str] | None = None,
) -> str:
    """A short Markdown report: retrieval / VQA / NLVR2 / ITM tables against chance, the image controls, VQA per
    answer type and per question family, stage losses (with each stage's trainable-parameter count and, from
    ``parameter_tables`` = stage → relative link, its ``trainable_parameters.md``), the plots, then the extra
    ``sections`` lines (the example gallery)."""
    lines = ["# VLMo evaluation report", ""]
    model = metrics.get("model", {})
    chance = metrics["chance"]
    timing = metrics.get("timing", {})
    if model:
        lines += [f"Model: `{model.get('config', '?')}` ({model.get('parameters', '?')} parameters).", ""]
    rerank = metrics.get("retrieval_rerank")
    lines += [
        "## Retrieval (test split, dual encoder, full image × caption matrix)",
        "",
        _row(["dataset", "", *RECALL_KEYS]),
        _row(["---"] * (len(RECALL_KEYS) + 2)),
    ]
    for name, scores in metrics["retrieval"].items():
        lines.append(_row([name, "model", *(scores[key] for key in RECALL_KEYS)]))
        if rerank and name in rerank:
            lines.append(_row([name, f"ITM re-rank, top {rerank['k']}", *(rerank[name][key] for key in RECALL_KEYS)]))
        lines.append(_row([name, "chance", *(chance["retrieval"][name][key] for key in RECALL_KEYS)]))
    lines.append("")
    if rerank:
        lines += [
            f"ITM re-rank: the top {rerank['k']} candidates of every query (both directions) scored as cosine + "
            "ITM match logit of the stage-3 model (the fine-tuned dual encoders keep no ITM head), as the "
            "official `compute_irtr_recall_with_rerank`.",
            "",
        ]
    seconds = [
        f"{name}: dual encoder {timing[f'retrieval_{name}_dual_encoder_s']:.1f} s"
        + (
            f", ITM re-rank {timing[f'retrieval_{name}_rerank_s']:.1f} s"
            if f"retrieval_{name}_rerank_s" in timing
            else ""
        )
        for name in metrics["retrieval"]
        if f"retrieval_{name}_dual_encoder_s" in timing
    ]
    if seconds:
        lines += ["Time (embeddings + recall; re-rank: fused passes + recall): " + "; ".join(seconds) + ".", ""]
    vqa, nlvr2, itm = metrics["vqa"], metrics["nlvr2"], metrics["itm"]
    lines += [
        "## VQA, NLVR2 and ITM",
        "",
        _row(["task", "metric", "model", "baseline"]),
        _row(["---"] * 4),
        _row(["VQA", "VQA score", vqa["score"], chance["vqa"]["score"]]),
        _row(["NLVR2", "dev accuracy", nlvr2["dev_acc"], chance["nlvr2"]["dev_acc"]]),
        _row(["NLVR2", "test1 accuracy", nlvr2["test_acc"], chance["nlvr2"]["test_acc"]]),
        _row(
            [
                "ITM (stage 3)",
                "accuracy, hard negatives",
                itm["acc_hard_negatives"],
                chance["itm"]["acc_hard_negatives"],
            ]
        ),
        _row(
            [
                "ITM (stage 3)",
                "accuracy, random negatives",
                itm["acc_random_negatives"],
                chance["itm"]["acc_random_negatives"],
            ]
        ),
        "",
        "Baselines: expected recall of a random ranking; always the majority training answer (VQA) or "
        "label (NLVR2); guessing on the balanced ITM decisions (50).",
        "",
    ]
    lines += [
        "## Does the model look at the image?",
        "",
        _row(["task", "metric", "real images", "shuffled images", "blank images", "baseline"]),
        _row(["---"] * 6),
        _row(
            [
                "VQA",
                "VQA score",
                vqa["score"],
                vqa["score_shuffled_images"],
                vqa["score_blank_images"],
                chance["vqa"]["score"],
            ]
        ),
        _row(
            [
                "NLVR2",
                "dev accuracy",
                nlvr2["dev_acc"],
                nlvr2["dev_acc_shuffled_images"],
                "n/a",
                chance["nlvr2"]["dev_acc"],
            ]
        ),
        _row(
            [
                "ITM (stage 3)",
                "accuracy, hard negatives",
                itm["acc_hard_negatives"],
                "n/a",
                "n/a",
                chance["itm"]["acc_hard_negatives"],
            ]
        ),
        _row(
            [
                "ITM (stage 3)",
                "accuracy, random negatives",
                itm["acc_random_negatives"],
                "n/a",
                "n/a",
                chance["itm"]["acc_random_negatives"],
            ]
        ),
        "",
        "Shuffled: every question / statement scored with the image (pair) of another test example (a seeded "
        "permutation of the images without fixed points: nothing keeps its own image). Blank: every image "
        "replaced by a mid-grey one. A model that reads the image drops towards the baseline; equal numbers "
        "mean it answers from the text alone. ITM: one positive and one negative caption per test image "
        "(negatives: hard = sampled from the model's ITC similarities, random = uniform), so 50 is chance; "
        f"{itm['hard_negative_duplicate_rate']:.1f} % of the hard and {itm['random_negative_duplicate_rate']:.1f}"
        " % of the random negatives are word for word the positive caption.",
        "",
    ]
    counts = metrics.get("data", {}).get("vqa_question_counts", {})
    for key, title, what in (
        ("by_type", "VQA by answer type", "answer type"),
        ("by_family", "VQA by question family (demo world)", "question family"),
    ):
        if not vqa[key]:
            continue
        baseline = "majority answer of the type" if key == "by_type" else "majority answer of the family"
        lines += [f"## {title}", "", _row([what, "questions", "model", baseline]), _row(["---"] * 4)]
        for name, score in vqa[key].items():
            lines.append(_row([name, counts.get(key, {}).get(name, "?"), score, _number(chance["vqa"][key].get(name))]))
        lines.append("")
    if stages:
        parameter_tables = parameter_tables or {}
        lines += [
            "## Training",
            "",
            _row(["stage / task", "steps", "first loss", "last loss", "seconds", "trainable parameters"]),
            _row(["---"] * 6),
        ]
        for name, stage in stages.items():
            lines.append(
                _row(
                    [
                        name,
                        stage.get("global_step", "?"),
                        _number(stage.get("first_loss")),
                        _number(stage.get("last_loss")),
                        _number(stage.get("seconds")),
                        _trainable_cell(stage.get("parameters"), parameter_tables.get(name)),
                    ]
                )
            )
        lines += [
            "",
            "First / last loss: mean over the first / last fifth of the logged steps. Trainable "
            "parameters: of the whole model; the linked table splits them by module group (what each stage "
            "freezes).",
            "",
        ]
    for title, file_name in plots.items():
        lines += [f"![{title}]({file_name})", ""]
    lines += list(sections)
    return "\n".join(lines).rstrip("\n") + "\n"


def _trainable_cell(counts: Any, link: str | None) -> str:
    text = "n/a"
    if isinstance(counts, Mapping) and {"trainable_params", "frozen_params"} <= set(counts):
        trainable, total = counts["trainable_params"], counts["trainable_params"] + counts["frozen_params"]
        text = f"{trainable:,} / {total:,}"
    return f"{text} ([table]({link}))" if link else text


def parameter_table_links(directory: str | os.PathLike, stages: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Stage → link, relative to ``directory``, of the ``trainable_parameters.md`` each training run wrote beside
    its CSV log (``parameter_table`` of its summary, else next to ``log_csv``); stages without one are left out."""
    links = {}
    for name, stage in stages.items():
        table = stage.get("parameter_table") or (
            str(Path(stage["log_csv"]).parent / "trainable_parameters.md") if stage.get("log_csv") else None
        )
        if table and Path(table).is_file():
            links[name] = Path(os.path.relpath(Path(table).resolve(), Path(directory).resolve())).as_posix()
    return links


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
    ks = [int(key[len("tr_r") :]) for key in RECALL_KEYS if key.startswith("tr_r")]
    for k in ks:
        row: list[Any] = [k]
        for section in (metrics["retrieval"], metrics["chance"]["retrieval"]):
            for name in metrics["retrieval"]:
                row += [round(float(section[name][f"{key}_r{k}"]), 4) for _, key in directions]
        writer.writerow(row)
    return buffer.getvalue()


def write_report(
    directory: str | os.PathLike,
    metrics: Mapping[str, Any],
    histories: Mapping[str, Sequence[tuple[int, float]]],
    stages: Mapping[str, Mapping[str, Any]],
    gallery: Gallery | None = None,
) -> Path:
    """Write ``loss_curves.png``, ``recall_at_k.png``, ``recall_at_k.csv``, the gallery PNGs (when ``gallery``
    has examples) and ``report.md`` (written last, linking every image relatively) into ``directory``."""
    from vlmo_pipeline.evaluation.gallery import write_gallery

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plots = {
        "Training loss curves": plot_loss_curves(histories, directory / "loss_curves.png").name,
        "Recall@K against chance": plot_recall_bars(metrics, directory / "recall_at_k.png").name,
    }
    atomic_write_text(directory / "recall_at_k.csv", recall_table_csv(metrics), parents=True)
    sections = write_gallery(directory, gallery) if gallery is not None else []
    report = directory / "report.md"
    atomic_write_text(
        report,
        render_report_markdown(
            metrics, stages, plots, sections, parameter_tables=parameter_table_links(directory, stages)
        ),
    )
    return report
