"""Qualitative examples for the evaluation report: a retrieval gallery and VQA / NLVR2 examples (PNG + Markdown).

(About 560 lines, one job: picking, drawing and captioning the examples of three tasks; most of it is the
matplotlib layout of each figure, which reads best next to the Markdown that describes it.)

The evaluation (:mod:`vlmo_pipeline.evaluation.suite`) already ranks every test image for a few query captions
and predicts every VQA answer and NLVR2 label; nothing is scored again here. This module picks the samples
deterministically (evenly spread over the split, see :func:`spread`), decodes their images from the Arrow shards
as small thumbnails and draws them:

* ``retrieval_gallery.png``: one row per query caption (the row title), its top-ranked test images left to right,
  the caption's own (ground-truth) image framed green;
* ``vqa_examples.png``: images with the question, the predicted and the true answer (green: right, red: wrong),
  and below them the VQA score per demo-world question family next to the family's majority-answer baseline
  (when the questions have families: none on real VQAv2);
* ``nlvr2_examples.png``: image pairs side by side with the statement, the predicted and the true label.

:func:`write_gallery` writes the PNGs (matplotlib, Agg backend; temporary name, then rename) and returns the
Markdown of the report's "Examples" section, which links them relatively and repeats the examples as tables.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from vlmo_pipeline.data.datasets import CorruptSampleError, ImageTextDataset, NLVR2Dataset, VQADataset  # noqa: E402
from vlmo_pipeline.evaluation.report import save_figure  # noqa: E402
from vlmo_pipeline.models.transforms import decode_image  # noqa: E402

__all__ = [
    "GALLERY_FILES",
    "Gallery",
    "NLVR2Example",
    "RankedImage",
    "RetrievalExample",
    "VQAExample",
    "gallery_markdown",
    "nlvr2_examples",
    "plot_nlvr2_examples",
    "plot_retrieval_gallery",
    "plot_vqa_examples",
    "retrieval_examples",
    "retrieval_query_rows",
    "spread",
    "vqa_examples",
    "write_gallery",
]

#: File names of the gallery images inside the report directory.
GALLERY_FILES = {
    "retrieval": "retrieval_gallery.png",
    "vqa": "vqa_examples.png",
    "nlvr2": "nlvr2_examples.png",
}
THUMBNAIL_SIZE = 160  # longest side in pixels; the figures never need more
RIGHT, WRONG, NEUTRAL = "#1a9850", "#d73027", "#bbbbbb"


# ------------------------------------------------------------------------------------------------ examples
@dataclass
class RankedImage:
    """One retrieved image: thumbnail, its id, the retrieval score and whether it is the query's own image."""

    image: Image.Image
    image_id: str
    score: float
    is_ground_truth: bool


@dataclass
class RetrievalExample:
    caption: str
    ranked: list[RankedImage]
    #: 1-based rank of the caption's own image among all images of the split
    ground_truth_rank: int
    #: the caption's own image when it is not among ``ranked`` (drawn after them), else None
    ground_truth: RankedImage | None = None


@dataclass
class VQAExample:
    image: Image.Image
    question: str
    predicted: str
    truth: str
    #: VQA soft score (0..1) the predicted answer earns for this question
    score: float
    #: the prediction earns the highest soft score of the question (it is as good as ``truth``)
    correct: bool


@dataclass
class NLVR2Example:
    image_0: Image.Image
    image_1: Image.Image
    sentence: str
    predicted: bool
    truth: bool

    @property
    def correct(self) -> bool:
        return self.predicted == self.truth


@dataclass
class Gallery:
    """Everything the report's "Examples" section shows; empty lists are left out of the report."""

    retrieval: list[RetrievalExample] = field(default_factory=list)
    vqa: list[VQAExample] = field(default_factory=list)
    nlvr2: list[NLVR2Example] = field(default_factory=list)
    retrieval_source: str = "coco test"
    vqa_source: str = "vqav2 val"
    nlvr2_source: str = "nlvr2 dev"
    #: VQA score (percent) of the whole split per question family, and of the family's majority answer
    vqa_by_family: dict[str, float] = field(default_factory=dict)
    vqa_by_family_chance: dict[str, float] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.retrieval or self.vqa or self.nlvr2)


# ------------------------------------------------------------------------------------------ sample choice
def spread(total: int, count: int) -> list[int]:
    """``count`` indices evenly spread over ``range(total)``, first and last included, ascending, no repeats.

    All of them when ``count >= total``; none when either is 0. Deterministic: the same split always gives the
    same examples, so reports of two runs show the same samples.
    """
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    step = (total - 1) / (count - 1)  # > 1, so the rounded positions are distinct
    return [int(round(i * step)) for i in range(count)]


def retrieval_query_rows(texts: ImageTextDataset, count: int) -> list[int]:
    """Sample indices of ``count`` query captions: the first caption of evenly spread images of ``texts``."""
    first_captions = np.flatnonzero(np.asarray(texts.caption_of_sample) == 0)
    return [int(first_captions[position]) for position in spread(len(first_captions), count)]


def _thumbnail(dataset: Any, row: int, column: str = "image") -> Image.Image:
    """The image of ``row`` decoded from the Arrow table, shrunk to at most THUMBNAIL_SIZE pixels a side."""
    table = dataset.table
    data = table.value(row, column)
    try:
        if data is None:
            raise ValueError("image cell is null")
        image = decode_image(data)
    except ValueError as error:
        raise CorruptSampleError(f"{table.where(row)} (column {column!r}): {error}") from error
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return image


def _check_predictions(name: str, predictions: Sequence[int], dataset: Any) -> None:
    if len(predictions) != len(dataset):
        raise ValueError(
            f"{name}: {len(predictions)} predictions for {len(dataset)} samples; the predictions must "
            f"come from a loader over the same dataset in order (shuffle=False)"
        )


def retrieval_examples(
    images: ImageTextDataset, texts: ImageTextDataset, ranked: Sequence[Mapping[str, Any]]
) -> list[RetrievalExample]:
    """Examples from :func:`~vlmo_pipeline.evaluation.evaluate.evaluate_retrieval`'s ``"examples"``.

    ``images`` is the image set the ranking was computed on (``image_rows`` are its rows), ``texts`` the caption
    set (``text_row`` is its sample index).
    """
    has_image_id = images.table.has_column("image_id")
    examples = []
    for query in ranked:
        text_row = int(query["text_row"])
        if not 0 <= text_row < len(texts):
            raise ValueError(f"retrieval example: text_row {text_row} outside the {len(texts)} captions")
        row = int(texts.row_of_sample[text_row])
        caption = texts.table.list_item(row, texts.text_column, int(texts.caption_of_sample[text_row]))
        truth = int(query["ground_truth"])
        entries = []
        for image_row, score in zip(query["image_rows"], query["scores"]):
            image_row = int(image_row)
            if not 0 <= image_row < images.table.num_rows:
                raise ValueError(f"retrieval example: image row {image_row} outside the {images.table.num_rows} images")
            image_id = images.table.value(image_row, "image_id") if has_image_id else f"row {image_row}"
            entries.append(RankedImage(_thumbnail(images, image_row), str(image_id), float(score), image_row == truth))
        shown = next((position + 1 for position, entry in enumerate(entries) if entry.is_ground_truth), None)
        own = None
        if shown is None:
            if not 0 <= truth < images.table.num_rows:
                raise ValueError(
                    f"retrieval example: ground-truth row {truth} outside the {images.table.num_rows} images"
                )
            image_id = images.table.value(truth, "image_id") if has_image_id else f"row {truth}"
            own = RankedImage(_thumbnail(images, truth), str(image_id), float(query["ground_truth_score"]), True)
        examples.append(
            RetrievalExample(
                caption=str(caption),
                ranked=entries,
                ground_truth=own,
                ground_truth_rank=shown or int(query["ground_truth_rank"]),
            )
        )
    return examples


def vqa_examples(dataset: VQADataset, predictions: Sequence[int], count: int) -> list[VQAExample]:
    """``count`` evenly spread questions of ``dataset`` with the predicted answer labels (one per sample, in order).

    The true answer is the one with the highest soft score (ties: the first listed); a question without any
    in-vocabulary answer shows its most frequent raw annotator answer, or "(none)".
    """
    _check_predictions("vqa", predictions, dataset)
    table = dataset.table
    vocabulary = dataset.answer_vocab

    def answer_text(label: int) -> str:
        return vocabulary[label] if vocabulary is not None and 0 <= label < len(vocabulary) else f"label {label}"

    examples = []
    for index in spread(len(dataset), count):
        row, position = int(dataset.row_of_sample[index]), int(dataset.question_of_sample[index])
        question = table.list_item(row, "questions", position)
        labels = _list_item_or(table, row, "answer_labels", position, [])
        values = _list_item_or(table, row, "answer_scores", position, [])
        scores = {int(label): float(value) for label, value in zip(labels, values)}
        predicted = int(predictions[index])
        if scores:
            best = max(scores.values())
            truth = answer_text(next(label for label, value in scores.items() if value == best))
            earned = scores.get(predicted, 0.0)
            correct = earned > 0 and earned == best
        else:
            raw = _list_item_or(table, row, "answers", position, [])
            truth = Counter(raw).most_common(1)[0][0] if raw else "(none)"
            earned, correct = 0.0, False
        examples.append(
            VQAExample(
                image=_thumbnail(dataset, row),
                question=str(question),
                predicted=answer_text(predicted),
                truth=str(truth),
                score=earned,
                correct=correct,
            )
        )
    return examples


def _list_item_or(table: Any, row: int, column: str, position: int, default: Any) -> Any:
    """Element ``position`` of the list in a cell, or ``default`` when the column, the list or the element is absent."""
    if not table.has_column(column):
        return default
    cell = table.scalar(row, column)
    if not cell.is_valid or len(cell) <= position:
        return default
    value = cell.values[position].as_py()
    return default if value is None else value


def nlvr2_examples(dataset: NLVR2Dataset, predictions: Sequence[int], count: int) -> list[NLVR2Example]:
    """``count`` evenly spread statements of ``dataset`` with the predicted labels (1 = "True"), in sample order."""
    _check_predictions("nlvr2", predictions, dataset)
    table = dataset.table
    examples = []
    for index in spread(len(dataset), count):
        row, position = int(dataset.row_of_sample[index]), int(dataset.sentence_of_sample[index])
        answer = table.list_item(row, "answers", position)
        if answer not in ("True", "False"):
            raise CorruptSampleError(f"{table.where(row)}: answer {position} is {answer!r}, expected 'True' or 'False'")
        examples.append(
            NLVR2Example(
                image_0=_thumbnail(dataset, row, "image_0"),
                image_1=_thumbnail(dataset, row, "image_1"),
                sentence=str(table.list_item(row, "questions", position)),
                predicted=bool(int(predictions[index])),
                truth=answer == "True",
            )
        )
    return examples


# ------------------------------------------------------------------------------------------------ drawing
def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(" ".join(str(text).split()), width=width)) or "(empty)"


def _frame(axis, colour: str, width: float) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def plot_retrieval_gallery(
    examples: Sequence[RetrievalExample], path: str | os.PathLike, title: str = "Text → image retrieval"
) -> Path:
    """One row per query: the caption as row title, the top-ranked images left to right, the ground-truth image
    framed green (drawn after a gap, with its rank, when it is not among the top ones)."""
    if not examples:
        raise ValueError("retrieval gallery: no example to draw")
    depth = max(1, max(len(example.ranked) for example in examples))
    extra = any(example.ground_truth is not None for example in examples)
    columns = depth + (2 if extra else 0)  # a narrow gap column, then the ground truth
    ratios = [1.0] * depth + ([0.15, 1.0] if extra else [])
    figure = plt.figure(figsize=(2.2 * sum(ratios) + 0.6, 2.9 * len(examples) + 0.5), layout="constrained")
    figure.suptitle(title, fontsize=13, parse_math=False)
    rows = figure.subfigures(len(examples), 1, squeeze=False)[:, 0]
    for row, example in zip(rows, examples):
        row.suptitle(
            f"“{_wrap(example.caption, 16 * depth)}” (its image: rank {example.ground_truth_rank})",
            fontsize=10,
            parse_math=False,
        )
        axes = row.subplots(1, columns, squeeze=False, width_ratios=ratios)[0]
        for axis in axes:
            axis.set_visible(False)
        for rank, (axis, entry) in enumerate(zip(axes, example.ranked), start=1):
            _draw_ranked(axis, entry, f"#{rank}")
        if example.ground_truth is not None:
            _draw_ranked(axes[-1], example.ground_truth, f"#{example.ground_truth_rank}")
    return save_figure(figure, path)


def _draw_ranked(axis, entry: RankedImage, rank: str) -> None:
    axis.set_visible(True)
    axis.imshow(entry.image)
    label = f"{rank}  score {entry.score:.2f}" + ("\nground truth" if entry.is_ground_truth else "")
    axis.set_title(label, fontsize=8, color=RIGHT if entry.is_ground_truth else "black", parse_math=False)
    image_id = entry.image_id if len(entry.image_id) <= 40 else entry.image_id[:39] + "…"
    axis.set_xlabel(image_id, fontsize=7, parse_math=False)
    _frame(axis, RIGHT if entry.is_ground_truth else NEUTRAL, 5 if entry.is_ground_truth else 1)


def plot_vqa_examples(
    examples: Sequence[VQAExample],
    path: str | os.PathLike,
    title: str = "VQA: predicted and true answers",
    by_family: Mapping[str, float] | None = None,
    by_family_chance: Mapping[str, float] | None = None,
) -> Path:
    """A grid of images, each with its question above and the predicted / true answer below (green right, red wrong);
    with ``by_family`` (VQA score per question family, percent, over the whole split) a bar chart of it below the
    grid, the family's majority-answer baseline (``by_family_chance``) as grey bars beside it."""
    if not examples:
        raise ValueError("VQA examples: no example to draw")
    columns = min(4, len(examples))
    rows = math.ceil(len(examples) / columns)
    grid_height = 3.8 * rows + 0.5
    chart_height = 2.6 if by_family else 0.0
    figure = plt.figure(figsize=(max(3.2 * columns, 6.4), grid_height + chart_height), layout="constrained")
    figure.suptitle(title, fontsize=13, parse_math=False)
    if by_family:
        grid, chart = figure.subfigures(2, 1, height_ratios=[grid_height, chart_height])
    else:
        grid, chart = figure, None
    axes = grid.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(examples) :]:
        axis.set_visible(False)
    for axis, example in zip(axes.flat, examples):
        colour = RIGHT if example.correct else WRONG
        axis.imshow(example.image)
        axis.set_title(f"Q: {_wrap(example.question, 34)}", fontsize=8, parse_math=False)
        verdict = "right" if example.correct else "wrong"
        axis.set_xlabel(
            f"predicted: {example.predicted} ({verdict})\ntrue: {example.truth}",
            fontsize=8,
            color=colour,
            parse_math=False,
        )
        _frame(axis, colour, 4)
    if chart is not None:
        _draw_family_bars(chart.subplots(), by_family, by_family_chance or {})
    return save_figure(figure, path)


def _draw_family_bars(axis, by_family: Mapping[str, float], chance: Mapping[str, float]) -> None:
    names = list(by_family)
    positions = range(len(names))
    bars = axis.bar(
        [p - 0.2 for p in positions], [by_family[name] for name in names], width=0.4, color="tab:green", label="model"
    )
    axis.bar_label(bars, fmt="%.0f", fontsize=7)
    if chance:
        axis.bar(
            [p + 0.2 for p in positions],
            [chance.get(name, 0.0) for name in names],
            width=0.4,
            color="lightgray",
            hatch="//",
            label="majority answer of the family",
        )
    axis.set_xticks(list(positions), names, fontsize=8)
    axis.set_ylim(0, 128)  # room above the 100 % bars for the legend
    axis.set_yticks([0, 25, 50, 75, 100])
    axis.set_ylabel("VQA score (%)", fontsize=8)
    axis.set_title("VQA score per question family (whole split)", fontsize=9)
    axis.legend(fontsize=7, loc="upper center", ncols=2, frameon=False)


def plot_nlvr2_examples(
    examples: Sequence[NLVR2Example],
    path: str | os.PathLike,
    title: str = "NLVR2: is the statement true of the image pair?",
) -> Path:
    """Image pairs side by side (two per figure row), the statement above, predicted / true label below."""
    if not examples:
        raise ValueError("NLVR2 examples: no example to draw")
    columns = min(2, len(examples))
    rows = math.ceil(len(examples) / columns)
    figure = plt.figure(figsize=(6.4 * columns, 3.6 * rows + 0.5), layout="constrained")
    figure.suptitle(title, fontsize=13, parse_math=False)
    cells = figure.subfigures(rows, columns, squeeze=False).flat
    for cell, example in zip(cells, examples):
        colour = RIGHT if example.correct else WRONG
        cell.suptitle(f"“{_wrap(example.sentence, 60)}”", fontsize=9, parse_math=False)
        left, right = cell.subplots(1, 2)
        for axis, image, side in ((left, example.image_0, "left"), (right, example.image_1, "right")):
            axis.imshow(image)
            axis.set_title(side, fontsize=8, parse_math=False)
            _frame(axis, colour, 3)
        verdict = "right" if example.correct else "wrong"
        cell.supxlabel(
            f"predicted: {example.predicted}  ·  true: {example.truth}  ({verdict})",
            fontsize=9,
            color=colour,
            parse_math=False,
        )
    return save_figure(figure, path)


# ----------------------------------------------------------------------------------------------- markdown
def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell (one line, pipes escaped)."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def gallery_markdown(gallery: Gallery, files: Mapping[str, str]) -> list[str]:
    """Markdown lines of the "Examples" section; ``files`` maps ``retrieval``/``vqa``/``nlvr2`` to the PNG names
    relative to the report (sections without a file are left out)."""
    if gallery.is_empty():
        return []
    lines = [
        "## Examples",
        "",
        "Samples chosen evenly over each split (the same ones every run); nothing is re-scored for them.",
        "",
    ]
    if gallery.retrieval and "retrieval" in files:
        depth = max(len(example.ranked) for example in gallery.retrieval)
        lines += [
            f"### Retrieval: top-{depth} {gallery.retrieval_source} images per caption",
            "",
            f"![Retrieval gallery]({files['retrieval']})",
            "",
            "The caption's own image is framed green; when it is not among the top ones it is shown last, "
            "with its rank among all images of the split.",
            "",
        ]
        lines += _table(
            ["query caption", "rank of its image", "best score"],
            [
                [
                    example.caption,
                    example.ground_truth_rank,
                    f"{example.ranked[0].score:.3f}" if example.ranked else "n/a",
                ]
                for example in gallery.retrieval
            ],
        )
        lines.append("")
    if gallery.vqa and "vqa" in files:
        right = sum(example.correct for example in gallery.vqa)
        lines += [
            f"### VQA ({gallery.vqa_source}): {right} of {len(gallery.vqa)} right",
            "",
            f"![VQA examples]({files['vqa']})",
            "",
        ]
        lines += _table(
            ["#", "question", "predicted", "true answer", "VQA score", "result"],
            [
                [
                    number,
                    example.question,
                    example.predicted,
                    example.truth,
                    f"{example.score:.2f}",
                    "right" if example.correct else "wrong",
                ]
                for number, example in enumerate(gallery.vqa, start=1)
            ],
        )
        lines += ["", "Right: the predicted answer earns the question's highest soft score.", ""]
    if gallery.nlvr2 and "nlvr2" in files:
        right = sum(example.correct for example in gallery.nlvr2)
        lines += [
            f"### NLVR2 ({gallery.nlvr2_source}): {right} of {len(gallery.nlvr2)} right",
            "",
            f"![NLVR2 examples]({files['nlvr2']})",
            "",
        ]
        lines += _table(
            ["#", "statement", "predicted", "true", "result"],
            [
                [number, example.sentence, example.predicted, example.truth, "right" if example.correct else "wrong"]
                for number, example in enumerate(gallery.nlvr2, start=1)
            ],
        )
        lines.append("")
    return lines


def write_gallery(directory: str | os.PathLike, gallery: Gallery) -> list[str]:
    """Write the gallery PNGs (only for sections with examples) into ``directory``; return the Markdown section."""
    directory = Path(directory)
    files: dict[str, str] = {}
    if gallery.retrieval:
        files["retrieval"] = plot_retrieval_gallery(
            gallery.retrieval,
            directory / GALLERY_FILES["retrieval"],
            title=f"Text → image retrieval on {gallery.retrieval_source}",
        ).name
    if gallery.vqa:
        files["vqa"] = plot_vqa_examples(
            gallery.vqa,
            directory / GALLERY_FILES["vqa"],
            title=f"VQA on {gallery.vqa_source}: predicted and true answers",
            by_family=gallery.vqa_by_family,
            by_family_chance=gallery.vqa_by_family_chance,
        ).name
    if gallery.nlvr2:
        files["nlvr2"] = plot_nlvr2_examples(
            gallery.nlvr2,
            directory / GALLERY_FILES["nlvr2"],
            title=f"NLVR2 on {gallery.nlvr2_source}: is the statement true of the image pair?",
        ).name
    return gallery_markdown(gallery, files)
