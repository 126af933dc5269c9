"""Evaluate fine-tuned VLMo models on their test splits (spec §5.3–5.5) and compute the matching baselines.

* :func:`evaluate_retrieval`: dual-encoder R@1/5/10 in both directions over the full image × caption matrix of a
  split (every image once, every caption once); optional ITM re-ranking of the top-k (``rerank_k``; off by
  default, as in the official evaluation — it needs a model that kept its ITM head). On request it also keeps
  the top-ranked images of a few caption queries (``example_queries``) for the report's retrieval gallery.
* :func:`evaluate_vqa`: VQA score (percent) of the arg-max answer against the soft targets (+ the predictions).
* :func:`evaluate_nlvr2`: accuracy (percent) of the two-pass NLVR2 classifier (+ the predictions).
* :func:`retrieval_chance`, :func:`vqa_majority_baseline`, :func:`nlvr2_majority_baseline`: the chance /
  majority-class baselines of the same test sets (``metrics.json["chance"]``), read from the Arrow tables
  without decoding images.

All functions run under ``torch.no_grad`` in eval mode on ``device`` (default: CUDA if available, else CPU).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

import torch
import torchmetrics
from torch.utils.data import DataLoader

from vlmo_pipeline.evaluation.metrics import (
    RetrievalRecall,
    VQAScore,
    chance_retrieval_recall,
    majority_baseline_vqa_score,
    majority_class_accuracy,
)
from vlmo_pipeline.data.datasets import NLVR2Dataset, VQADataset
from vlmo_pipeline.models import VLMo

__all__ = [
    "default_device",
    "evaluate_retrieval",
    "evaluate_vqa",
    "evaluate_nlvr2",
    "recall_from_scores",
    "retrieval_chance",
    "vqa_majority_baseline",
    "nlvr2_labels",
    "nlvr2_majority_baseline",
]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (as training), a no-op on the CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def _embed(model: VLMo, images_loader: DataLoader, texts_loader: DataLoader, device: torch.device):
    image_feats, image_ids, text_feats, text_image_ids = [], [], [], []
    with _autocast(device):
        for batch in images_loader:
            image_feats.append(model.encode_image(batch["image"].to(device)).float())
            image_ids.append(batch["image_index"])
        for batch in texts_loader:
            text_feats.append(model.encode_text(batch["text_ids"].to(device), batch["text_masks"].to(device)).float())
            text_image_ids.append(batch["image_index"])
    return torch.cat(image_feats), torch.cat(image_ids), torch.cat(text_feats), torch.cat(text_image_ids)


@torch.no_grad()
def evaluate_retrieval(
    model: VLMo,
    images_loader: DataLoader,
    texts_loader: DataLoader,
    ks: Sequence[int] = (1, 5, 10),
    rerank_k: int = 0,
    device: torch.device | None = None,
    example_queries: Sequence[int] = (),
    example_depth: int = 5,
) -> dict[str, Any]:
    """Recall@K (percent) of image→text (``tr_r*``) and text→image (``ir_r*``) retrieval, plus ``rsum``.

    ``images_loader`` yields every image of the split once (``image``, ``image_index``), ``texts_loader`` every
    caption (``text_ids``, ``text_masks``, ``image_index`` of its image). With ``rerank_k > 0`` the top-k
    candidates of every query are re-scored as ``cosine + ITM match logit`` (official
    ``compute_irtr_recall_with_rerank``), which needs the model's ITM head.

    ``example_queries``: positions of captions in ``texts_loader``'s order (= sample indices of its dataset).
    When given, the result also holds ``"examples"``: one dict per query with ``text_row`` (the position),
    ``image_rows`` (``image_index`` of the ``example_depth`` best images, best first, from the same scores the
    recall was computed on, re-ranked ones included), ``scores``, ``ground_truth`` (the caption's image),
    ``ground_truth_rank`` (1 = best; images with an equal score count as ranked before it) and
    ``ground_truth_score``. Every other value of the result is a float.
    """
    device = device or default_device()
    model = model.to(device).eval()
    image_feats, image_ids, text_feats, text_image_ids = _embed(model, images_loader, texts_loader, device)
    queries = _check_queries(example_queries, len(text_feats))
    if example_depth < 1:
        raise ValueError(f"example_depth must be >= 1, got {example_depth}")
    if rerank_k <= 0:
        metric = RetrievalRecall(ks=ks)
        metric.update(image_feats=image_feats, image_ids=image_ids)
        metric.update(text_feats=text_feats, text_image_ids=text_image_ids)
        result: dict[str, Any] = {key: float(value) for key, value in metric.compute().items()}
        if queries:
            query_scores = text_feats[queries] @ image_feats.t()  # (Q, Ni), columns in loader order
            result["examples"] = _ranked_examples(query_scores, image_ids, queries, text_image_ids, example_depth)
        return result
    order = torch.argsort(image_ids)
    if not torch.equal(image_ids[order], torch.arange(len(image_ids))):
        raise ValueError("re-ranking needs the image loader to cover image rows 0..N-1 exactly once")
    scores = image_feats[order] @ text_feats.t()
    i2t, t2i = _rerank_with_itm(model, scores, images_loader.dataset, texts_loader.dataset, rerank_k, device)
    result = recall_from_scores(i2t, t2i, text_image_ids, ks)
    if queries:  # columns of t2i are image rows 0..N-1
        result["examples"] = _ranked_examples(t2i[queries], torch.arange(len(image_ids)), queries, text_image_ids,
                                              example_depth)
    return result


def _check_queries(queries: Sequence[int], n_texts: int) -> list[int]:
    checked = [int(query) for query in queries]
    outside = [query for query in checked if not 0 <= query < n_texts]
    if outside:
        raise ValueError(f"example_queries {outside} outside the {n_texts} captions of the text loader")
    return checked


def _ranked_examples(query_scores: torch.Tensor, column_image_ids: torch.Tensor, queries: list[int],
                     text_image_ids: torch.Tensor, depth: int) -> list[dict[str, Any]]:
    """Top-``depth`` images of every query row of ``query_scores`` (columns named by ``column_image_ids``)."""
    query_scores = query_scores.float()
    top = query_scores.topk(min(depth, query_scores.shape[1]), dim=1)
    examples = []
    for row, query in enumerate(queries):
        truth = int(text_image_ids[query])
        columns = torch.nonzero(column_image_ids == truth).flatten()
        if len(columns) == 0:
            raise ValueError(f"caption {query} belongs to image {truth}, which the image loader never yielded")
        truth_score = query_scores[row, columns[0]]
        examples.append({
            "text_row": query,
            "image_rows": column_image_ids[top.indices[row]].tolist(),
            "scores": top.values[row].tolist(),
            "ground_truth": truth,
            "ground_truth_rank": int((query_scores[row] >= truth_score).sum()),
            "ground_truth_score": float(truth_score),
        })
    return examples


@torch.no_grad()
def _rerank_with_itm(model, scores, image_dataset, text_dataset, k, device):
    """Add the ITM match logit to the cosine score of every query's top-k candidates (both directions)."""
    model._require("itm_score", "itm (keep the ITM head to re-rank)")
    i2t, t2i = scores.clone(), scores.t().clone()

    def itm_match_logits(image_rows: Iterable[int], text_rows: Iterable[int]) -> torch.Tensor:
        images = torch.stack([image_dataset[int(row)]["image"] for row in image_rows]).to(device)
        texts = [text_dataset[int(row)] for row in text_rows]
        ids = torch.stack([item["text_ids"] for item in texts]).to(device)
        masks = torch.stack([item["text_masks"] for item in texts]).to(device)
        with _autocast(device):
            return model.itm_logits(ids, masks, images)[:, 1].float().cpu()

    top = min(k, scores.shape[1])
    for image_row in range(scores.shape[0]):
        candidates = scores[image_row].topk(top).indices
        i2t[image_row, candidates] += itm_match_logits([image_row] * top, candidates.tolist())
    top = min(k, scores.shape[0])
    for text_row in range(scores.shape[1]):
        candidates = scores[:, text_row].topk(top).indices
        t2i[text_row, candidates] += itm_match_logits(candidates.tolist(), [text_row] * top)
    return i2t, t2i


def recall_from_scores(
    i2t_scores: torch.Tensor, t2i_scores: torch.Tensor, text_to_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K (percent) from explicit (Ni, Nt) image→text and (Nt, Ni) text→image score matrices."""
    text_to_image = text_to_image.long()
    n_images, n_texts = i2t_scores.shape
    result: dict[str, float] = {}
    top = min(max(ks), n_texts)
    ranked_texts = i2t_scores.topk(top, dim=1).indices
    text_hit = (text_to_image[ranked_texts] == torch.arange(n_images).unsqueeze(1)).cummax(dim=1).values
    top_images = min(max(ks), n_images)
    ranked_images = t2i_scores.topk(top_images, dim=1).indices
    image_hit = (ranked_images == text_to_image.unsqueeze(1)).cummax(dim=1).values
    for k in ks:
        result[f"tr_r{k}"] = 100.0 * float(text_hit[:, min(k, top) - 1].float().mean())
    for k in ks:
        result[f"ir_r{k}"] = 100.0 * float(image_hit[:, min(k, top_images) - 1].float().mean())
    result["rsum"] = sum(result.values())
    return result


@torch.no_grad()
def evaluate_vqa(model: VLMo, loader: DataLoader, device: torch.device | None = None) -> dict[str, Any]:
    """VQA score (percent) and the number of questions scored; also the predicted answer label per question."""
    device = device or default_device()
    model = model.to(device).eval()
    metric = VQAScore()
    predictions: list[int] = []
    with _autocast(device):
        for batch in loader:
            logits = model.vqa_logits(batch["text_ids"].to(device), batch["text_masks"].to(device),
                                      batch["image"].to(device)).float().cpu()
            metric.update(logits, batch["vqa_targets"])
            predictions.extend(logits.argmax(1).tolist())
    return {"score": float(metric.compute()), "questions": len(predictions), "predictions": predictions}


@torch.no_grad()
def evaluate_nlvr2(model: VLMo, loader: DataLoader, device: torch.device | None = None) -> dict[str, Any]:
    """Accuracy (percent) of the NLVR2 head, the number of statements scored and the predicted label (1 = "True")
    of every statement in loader order."""
    device = device or default_device()
    model = model.to(device).eval()
    metric = torchmetrics.Accuracy(task="binary")
    predictions: list[int] = []
    with _autocast(device):
        for batch in loader:
            logits = model.nlvr2_logits(batch["text_ids"].to(device), batch["text_masks"].to(device),
                                        batch["image_0"].to(device), batch["image_1"].to(device)).float().cpu()
            predicted = logits.argmax(1)
            metric.update(predicted, batch["label"])
            predictions.extend(predicted.tolist())
    return {"accuracy": 100.0 * float(metric.compute()), "samples": len(predictions), "predictions": predictions}


# --------------------------------------------------------------------------------------------- baselines
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
    totals: Counter = Counter()
    for scores in _vqa_question_scores(train_dataset):
        totals.update(scores)
    if not totals:
        raise ValueError("the VQA training split has no scored answer: cannot pick a majority answer")
    majority = totals.most_common(1)[0][0]
    return majority_baseline_vqa_score([majority], _vqa_question_scores(eval_dataset))


def nlvr2_labels(dataset: NLVR2Dataset) -> list[int]:
    """Label (1 = "True") of every statement of ``dataset`` in sample order, without decoding images."""
    table = dataset.table
    return [int(table.list_item(row, "answers", position) == "True")
            for row, position in zip(dataset.row_of_sample.tolist(), dataset.sentence_of_sample.tolist())]


def nlvr2_majority_baseline(train_dataset: NLVR2Dataset, eval_dataset: NLVR2Dataset) -> float:
    """Accuracy (percent) on ``eval_dataset`` of always predicting the most frequent training label."""
    return majority_class_accuracy(nlvr2_labels(train_dataset), nlvr2_labels(eval_dataset))
