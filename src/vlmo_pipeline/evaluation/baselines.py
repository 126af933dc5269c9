"""Chance and majority-class baselines of the evaluation's test sets (``metrics.json["chance"]``).

Each is read from the Arrow tables of the same splits the models are scored on, without decoding an image: the
recall of a random ranking, the VQA score of always giving the majority training answer (overall and per question
group), and the NLVR2 accuracy of always predicting the majority training label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from vlmo_pipeline.data.datasets import NLVR2Dataset, VQADataset
from vlmo_pipeline.evaluation.evaluate import group_order
from vlmo_pipeline.evaluation.metrics import (
    chance_retrieval_recall,
    majority_baseline_vqa_score,
    majority_class_accuracy,
)

__all__ = [
    "retrieval_chance",
    "vqa_majority_baseline",
    "vqa_majority_baseline_by_group",
    "nlvr2_labels",
    "nlvr2_majority_baseline",
]


def retrieval_chance(captions_per_image: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recall of a random ranking on a split with these caption counts per image."""
    return chance_retrieval_recall(len(captions_per_image), list(captions_per_image), ks)


def _vqa_question_scores(dataset: VQADataset) -> list[dict[int, float]]:
    """``{label: soft score}`` of every question of ``dataset`` in sample order, read from the Arrow table only."""
    table = dataset.table
    per_question = []
    for row, position in zip(dataset.row_of_sample.tolist(), dataset.question_of_sample.tolist()):
        labels = table.scalar(row, "answer_labels")
        if not labels.is_valid or len(labels) <= position:
            per_question.append({})
            continue
        label_list = labels.values[position].as_py() or []
        score_list = table.scalar(row, "answer_scores").values[position].as_py() or []
        per_question.append(dict(zip(label_list, score_list)))
    return per_question


def vqa_majority_baseline(train_dataset: VQADataset, eval_dataset: VQADataset) -> float:
    """VQA score (percent) on ``eval_dataset`` of always giving the answer with the largest total training score."""
    majority = _majority_answer(_vqa_question_scores(train_dataset))
    if majority is None:
        raise ValueError("the VQA training split has no scored answer: cannot pick a majority answer")
    return majority_baseline_vqa_score([majority], _vqa_question_scores(eval_dataset))


def _majority_answer(per_question: Sequence[dict[int, float]]) -> int | None:
    totals: Counter = Counter()
    for scores in per_question:
        totals.update(scores)
    return totals.most_common(1)[0][0] if totals else None


def vqa_majority_baseline_by_group(
    train_dataset: VQADataset,
    eval_dataset: VQADataset,
    train_groups: Sequence[str],
    eval_groups: Sequence[str],
    preferred: Sequence[str] = (),
    leave_out: Sequence[str] = ("", "unmatched"),
) -> dict[str, float]:
    """Per group of the evaluation questions (e.g. answer type): VQA score (percent) of always giving that group's
    majority training answer (largest total training score among the group's training questions; the overall
    majority answer when the group has no scored training question). Keys as :func:`mean_score_by_group`."""
    train_scores, eval_scores = _vqa_question_scores(train_dataset), _vqa_question_scores(eval_dataset)
    if len(train_groups) != len(train_scores) or len(eval_groups) != len(eval_scores):
        raise ValueError("one group label per training and per evaluation question is needed")
    overall = _majority_answer(train_scores)
    if overall is None:
        raise ValueError("the VQA training split has no scored answer: cannot pick a majority answer")
    result = {}
    for name in group_order(eval_groups, preferred, leave_out):
        majority = _majority_answer([scores for scores, group in zip(train_scores, train_groups) if group == name])
        targets = [scores for scores, group in zip(eval_scores, eval_groups) if group == name]
        result[name] = majority_baseline_vqa_score([overall if majority is None else majority], targets)
    return result


def nlvr2_labels(dataset: NLVR2Dataset) -> list[int]:
    """Label (1 = "True") of every statement of ``dataset`` in sample order, without decoding images."""
    table = dataset.table
    return [
        int(table.list_item(row, "answers", position) == "True")
        for row, position in zip(dataset.row_of_sample.tolist(), dataset.sentence_of_sample.tolist())
    ]


def nlvr2_majority_baseline(train_dataset: NLVR2Dataset, eval_dataset: NLVR2Dataset) -> float:
    """Accuracy (percent) on ``eval_dataset`` of always predicting the most frequent training label."""
    return majority_class_accuracy(nlvr2_labels(train_dataset), nlvr2_labels(eval_dataset))
