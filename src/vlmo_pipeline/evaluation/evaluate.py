"""Evaluate fine-tuned VLMo models on their test splits (spec §5.3–5.5): one pass per task.

(About 560 lines: the four passes share the device, autocast, batching and progress helpers at the top and the
ITM scoring that both retrieval re-ranking and held-out ITM use, so they stay together.)

* :func:`evaluate_retrieval`: dual-encoder R@1/5/10 in both directions over the full image × caption matrix of a
  split (every image once, every caption once); optionally also the ITM re-ranking of every query's top-k
  (``rerank_k``, official ``compute_irtr_recall_with_rerank``), with the ITM head of another model when the
  retrieval model has none (the fine-tuned ones do not keep it). On request it also keeps the top-ranked images
  of a few caption queries (``example_queries``) for the report's retrieval gallery.
* :func:`evaluate_vqa`: VQA score (percent) of the arg-max answer against the soft targets (+ the predictions
  and every question's own score, for the per-answer-type and per-family breakdowns of
  :func:`mean_score_by_group`).
* :func:`evaluate_nlvr2`: accuracy (percent) of the two-pass NLVR2 classifier (+ the predictions).
* :func:`evaluate_itm`: held-out ITM accuracy of a model that kept its ITM head, one positive and one negative
  caption per image, negatives drawn by the stage-3 sampler (hard: from the ITC similarities; random: uniform).
The chance / majority-class baselines of the same test sets are :mod:`vlmo_pipeline.evaluation.baselines`.

The image controls (shuffled / blank images) run these same functions on controlled copies of the datasets
(:mod:`vlmo_pipeline.evaluation.controls`). All functions run under ``torch.no_grad`` in eval mode on ``device``
(default: CUDA if available, else CPU). Every pass over a split reports its progress (``desc`` names it): a bar on
a terminal, else a log line every ~10 % of a long pass and one when it ends
(:func:`vlmo_pipeline.progress.track`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchmetrics
from torch.utils.data import DataLoader, Subset

from vlmo_pipeline.data.collate import collate
from vlmo_pipeline.data.datasets import ImageTextDataset, VQADataset
from vlmo_pipeline.data.demo.vqav2 import question_family
from vlmo_pipeline.evaluation.metrics import (
    RetrievalRecall,
    VQAScore,
    vqa_scores_of_argmax,
)
from vlmo_pipeline.models import VLMo
from vlmo_pipeline.progress import batch_size_of, track
from vlmo_pipeline.training.objectives import ITM_NEGATIVE_MODES, sample_itm_negatives

__all__ = [
    "RERANK_OUTSIDE_TOP_K",
    "VQA_ANSWER_TYPES",
    "default_device",
    "evaluate_retrieval",
    "evaluate_vqa",
    "evaluate_nlvr2",
    "evaluate_itm",
    "group_counts",
    "group_order",
    "mean_score_by_group",
    "recall_from_scores",
    "rerank_scores",
    "vqa_question_groups",
]

#: The answer types of VQAv2 (``answer_type`` column), in report order.
VQA_ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")
#: Offset of every candidate outside a query's re-ranked top-k (official: the re-rank matrix starts at -100).
RERANK_OUTSIDE_TOP_K = -100.0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (as training), a no-op on the CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _samples(loader: DataLoader) -> int | None:
    try:
        return len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


@torch.no_grad()
def _embed(
    model: VLMo, images_loader: DataLoader, texts_loader: DataLoader, device: torch.device, desc: str = "retrieval"
):
    image_feats, image_ids, text_feats, text_image_ids = [], [], [], []
    with _autocast(device):
        for batch in track(
            images_loader,
            f"{desc}: image encoding",
            total=_samples(images_loader),
            unit="image",
            count=batch_size_of("image_index"),
        ):
            image_feats.append(model.encode_image(batch["image"].to(device)).float())
            image_ids.append(batch["image_index"])
        for batch in track(
            texts_loader,
            f"{desc}: caption encoding",
            total=_samples(texts_loader),
            unit="caption",
            count=batch_size_of("image_index"),
        ):
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
    itm_model: VLMo | None = None,
    desc: str = "retrieval",
) -> dict[str, Any]:
    """Recall@K (percent) of image→text (``tr_r*``) and text→image (``ir_r*``) retrieval, plus ``rsum``.

    ``images_loader`` yields every image of the split once (``image``, ``image_index``), ``texts_loader`` every
    caption (``text_ids``, ``text_masks``, ``image_index`` of its image). The recall keys are always the dual
    encoder's (cosine of ``model.encode_image`` / ``encode_text`` over the full matrix).

    With ``rerank_k > 0`` the result also holds ``"rerank"``: the same recall keys after the official ITM
    re-ranking (:func:`rerank_scores`: the top-k candidates of every query, both directions, are scored
    ``cosine + ITM match logit``). The fused passes and the ITM head are ``itm_model``'s (default: ``model``):
    the fine-tuned retrieval models keep no ITM head, so the evaluation re-ranks their top-k with the stage-3
    model's, which must read the same tokens and images (same vocabulary, same image size). ``"timing"`` holds the
    seconds of the dual-encoder evaluation (``dual_encoder_s``: embeddings + recall) and of the re-ranking
    (``rerank_s``: the fused passes + recall).

    ``example_queries``: positions of captions in ``texts_loader``'s order (= sample indices of its dataset).
    When given, the result also holds ``"examples"``: one dict per query with ``text_row`` (the position),
    ``image_rows`` (``image_index`` of the ``example_depth`` best images, best first, from the dual-encoder
    scores the recall keys were computed on), ``scores``, ``ground_truth`` (the caption's image),
    ``ground_truth_rank`` (1 = best; images with an equal score count as ranked before it) and
    ``ground_truth_score``. Every other top-level value of the result is a float. ``desc`` names the progress of
    the encoding and re-ranking passes.
    """
    device = device or default_device()
    started = time.perf_counter()
    model = model.to(device).eval()
    image_feats, image_ids, text_feats, text_image_ids = _embed(model, images_loader, texts_loader, device, desc)
    queries = _check_queries(example_queries, len(text_feats))
    if example_depth < 1:
        raise ValueError(f"example_depth must be >= 1, got {example_depth}")
    metric = RetrievalRecall(ks=ks)
    metric.update(image_feats=image_feats, image_ids=image_ids)
    metric.update(text_feats=text_feats, text_image_ids=text_image_ids)
    result: dict[str, Any] = {key: float(value) for key, value in metric.compute().items()}
    if queries:
        query_scores = text_feats[queries] @ image_feats.t()  # (Q, Ni), columns in loader order
        result["examples"] = _ranked_examples(query_scores, image_ids, queries, text_image_ids, example_depth)
    timing = {"dual_encoder_s": time.perf_counter() - started}
    if rerank_k > 0:
        started = time.perf_counter()
        order = torch.argsort(image_ids)
        if not torch.equal(image_ids[order], torch.arange(len(image_ids))):
            raise ValueError("re-ranking needs the image loader to cover image rows 0..N-1 exactly once")
        itm_model = (itm_model if itm_model is not None else model).to(device).eval()
        i2t, t2i = rerank_scores(
            itm_model,
            image_feats[order] @ text_feats.t(),
            images_loader.dataset,
            texts_loader.dataset,
            rerank_k,
            device,
            batch_size=images_loader.batch_size or 64,
            desc=f"{desc}: ITM re-rank",
        )
        result["rerank"] = recall_from_scores(i2t, t2i, text_image_ids, ks)
        timing["rerank_s"] = time.perf_counter() - started
    result["timing"] = timing
    return result


def _check_queries(queries: Sequence[int], n_texts: int) -> list[int]:
    checked = [int(query) for query in queries]
    outside = [query for query in checked if not 0 <= query < n_texts]
    if outside:
        raise ValueError(f"example_queries {outside} outside the {n_texts} captions of the text loader")
    return checked


def _ranked_examples(
    query_scores: torch.Tensor,
    column_image_ids: torch.Tensor,
    queries: list[int],
    text_image_ids: torch.Tensor,
    depth: int,
) -> list[dict[str, Any]]:
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
        examples.append(
            {
                "text_row": query,
                "image_rows": column_image_ids[top.indices[row]].tolist(),
                "scores": top.values[row].tolist(),
                "ground_truth": truth,
                "ground_truth_rank": int((query_scores[row] >= truth_score).sum()),
                "ground_truth_score": float(truth_score),
            }
        )
    return examples


@torch.no_grad()
def rerank_scores(
    itm_model: VLMo,
    scores: torch.Tensor,
    image_dataset: Any,
    text_dataset: Any,
    k: int,
    device: torch.device,
    batch_size: int = 64,
    desc: str = "ITM re-rank",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ITM re-ranking (``compute_irtr_recall_with_rerank``) of a (Ni, Nt) cosine matrix ``scores``.

    Every image's top-k captions and every caption's top-k images get ``cosine + ITM match logit``; every other
    candidate gets ``cosine - 100`` (the official matrix starts at -100), so the top-k stay first and are
    re-ordered by the ITM head while the rest keep their dual-encoder order. Returns the (Ni, Nt) image→text and
    (Nt, Ni) text→image matrices. ``image_dataset[row]`` must give the image of row ``row`` (image-only caption
    dataset), ``text_dataset[t]`` the tokens of caption ``t``.

    Cheap: the pairs of both directions are pooled and deduplicated (a pair in an image's and in its caption's
    top-k is scored once) and scored in fused passes of ``batch_size`` pairs, sorted by image so that every image
    is decoded about once.
    """
    itm_model._require("itm_score", "itm (keep the ITM head to re-rank)")
    scores = scores.float().cpu()
    n_images, n_texts = scores.shape
    texts_top = scores.topk(min(k, n_texts), dim=1).indices  # (Ni, k): captions re-ranked for each image
    images_top = scores.t().topk(min(k, n_images), dim=1).indices  # (Nt, k): images re-ranked for each caption
    image_of_pair = torch.cat([torch.arange(n_images).repeat_interleave(texts_top.shape[1]), images_top.flatten()])
    text_of_pair = torch.cat([texts_top.flatten(), torch.arange(n_texts).repeat_interleave(images_top.shape[1])])
    pair_keys = torch.unique(image_of_pair * n_texts + text_of_pair)  # sorted, so grouped by image
    match_logits = _itm_match_logits(
        itm_model,
        (pair_keys // n_texts).tolist(),
        (pair_keys % n_texts).tolist(),
        image_dataset,
        text_dataset,
        device,
        batch_size,
        desc,
    )

    def logits_of(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return match_logits[torch.searchsorted(pair_keys, images * n_texts + texts)]

    i2t = scores + RERANK_OUTSIDE_TOP_K
    image_rows = torch.arange(n_images).unsqueeze(1).expand_as(texts_top)
    i2t[image_rows, texts_top] = scores[image_rows, texts_top] + logits_of(image_rows, texts_top)
    t2i = scores.t() + RERANK_OUTSIDE_TOP_K
    text_rows = torch.arange(n_texts).unsqueeze(1).expand_as(images_top)
    t2i[text_rows, images_top] = scores.t()[text_rows, images_top] + logits_of(images_top, text_rows)
    return i2t, t2i


def _trim_padding(text_ids: torch.Tensor, text_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the padding columns no text of the batch uses: the fused pass then costs what the longest text needs
    (padded keys are masked and text positions are relative, so the logits are the same)."""
    length = max(1, int(text_masks.sum(dim=1).max()))
    return text_ids[:, :length], text_masks[:, :length]


def _itm_match_logits(
    itm_model: VLMo,
    image_rows: Sequence[int],
    text_rows: Sequence[int],
    image_dataset: Any,
    text_dataset: Any,
    device: torch.device,
    batch_size: int,
    desc: str = "ITM re-rank",
) -> torch.Tensor:
    """(P,) ITM match logit (index 1) of every (image row, caption) pair, in fused passes of ``batch_size``."""
    batch_size = max(1, int(batch_size))
    texts: dict[int, dict[str, torch.Tensor]] = {}
    images: dict[int, torch.Tensor] = {}
    logits = []
    starts = range(0, len(image_rows), batch_size)
    for start in track(
        starts, desc, total=len(image_rows), unit="pair", count=lambda start: min(batch_size, len(image_rows) - start)
    ):
        chunk_images, chunk_texts = image_rows[start : start + batch_size], text_rows[start : start + batch_size]
        kept = {}  # this chunk's images; the previous chunk's last image is reused, not decoded again
        for row in chunk_images:
            if row not in kept:
                kept[row] = images[row] if row in images else image_dataset[row]["image"]
        images = kept
        for row in chunk_texts:
            if row not in texts:
                item = text_dataset[row]
                texts[row] = {"text_ids": item["text_ids"], "text_masks": item["text_masks"]}
        pixels = torch.stack([images[row] for row in chunk_images]).to(device)
        ids, masks = _trim_padding(
            torch.stack([texts[row]["text_ids"] for row in chunk_texts]),
            torch.stack([texts[row]["text_masks"] for row in chunk_texts]),
        )
        ids, masks = ids.to(device), masks.to(device)
        with _autocast(device):
            logits.append(itm_model.itm_logits(ids, masks, pixels)[:, 1].float().cpu())
    return torch.cat(logits) if logits else torch.zeros(0)


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
    for k in ks:  # hits counted as integers: the same floats as retrieval_recall gives for the same ranking
        result[f"tr_r{k}"] = 100.0 * int(text_hit[:, min(k, top) - 1].sum()) / n_images
    for k in ks:
        result[f"ir_r{k}"] = 100.0 * int(image_hit[:, min(k, top_images) - 1].sum()) / n_texts
    result["rsum"] = sum(result.values())
    return result


@torch.no_grad()
def evaluate_vqa(
    model: VLMo, loader: DataLoader, device: torch.device | None = None, desc: str = "vqa"
) -> dict[str, Any]:
    """VQA score (percent) and the number of questions scored; also, per question in loader order, the predicted
    answer label (``predictions``) and the soft score it earns, in [0, 1] (``question_scores``)."""
    device = device or default_device()
    model = model.to(device).eval()
    metric = VQAScore()
    predictions: list[int] = []
    question_scores: list[float] = []
    with _autocast(device):
        for batch in track(loader, desc, total=_samples(loader), unit="question", count=batch_size_of("text_ids")):
            logits = (
                model.vqa_logits(
                    batch["text_ids"].to(device), batch["text_masks"].to(device), batch["image"].to(device)
                )
                .float()
                .cpu()
            )
            metric.update(logits, batch["vqa_targets"])
            predictions.extend(logits.argmax(1).tolist())
            question_scores.extend(vqa_scores_of_argmax(logits, batch["vqa_targets"]).tolist())
    return {
        "score": float(metric.compute()),
        "questions": len(predictions),
        "predictions": predictions,
        "question_scores": question_scores,
    }


def vqa_question_groups(dataset: VQADataset) -> dict[str, list[str]]:
    """Per question of ``dataset`` (sample order): ``answer_type`` ("" when the table has none) and ``family``
    (:func:`vlmo_pipeline.data.demo.vqav2.question_family` of the question text: a demo-world question family, or
    "unmatched" for any other question, e.g. every real VQAv2 one). Read from the Arrow table, no image decoded."""
    table = dataset.table
    answer_types, families = [], []
    for row, position in zip(dataset.row_of_sample.tolist(), dataset.question_of_sample.tolist()):
        answer_types.append(str(dataset._optional_list_item(row, "answer_type", position, default="")))
        families.append(question_family(str(table.list_item(row, "questions", position))))
    return {"answer_type": answer_types, "family": families}


def group_order(groups: Sequence[str], preferred: Sequence[str], leave_out: Sequence[str]) -> list[str]:
    present = set(groups) - set(leave_out)
    return [name for name in preferred if name in present] + sorted(present - set(preferred))


def mean_score_by_group(
    scores: Sequence[float],
    groups: Sequence[str],
    preferred: Sequence[str] = (),
    leave_out: Sequence[str] = ("", "unmatched"),
) -> dict[str, float]:
    """Mean of ``scores`` (each in [0, 1]) per group, in percent: groups present in ``groups`` except
    ``leave_out``, ordered as ``preferred`` first, then alphabetically. A group without samples has no key."""
    if len(scores) != len(groups):
        raise ValueError(f"{len(scores)} scores for {len(groups)} group labels")
    totals: dict[str, list[float]] = defaultdict(list)
    for score, group in zip(scores, groups):
        totals[group].append(float(score))
    return {name: 100.0 * sum(totals[name]) / len(totals[name]) for name in group_order(groups, preferred, leave_out)}


def group_counts(
    groups: Sequence[str], preferred: Sequence[str] = (), leave_out: Sequence[str] = ("", "unmatched")
) -> dict[str, int]:
    """Number of samples per group, same keys and order as :func:`mean_score_by_group`."""
    counts = Counter(groups)
    return {name: counts[name] for name in group_order(groups, preferred, leave_out)}


@torch.no_grad()
def evaluate_nlvr2(
    model: VLMo, loader: DataLoader, device: torch.device | None = None, desc: str = "nlvr2"
) -> dict[str, Any]:
    """Accuracy (percent) of the NLVR2 head, the number of statements scored and the predicted label (1 = "True")
    of every statement in loader order."""
    device = device or default_device()
    model = model.to(device).eval()
    metric = torchmetrics.Accuracy(task="binary")
    predictions: list[int] = []
    with _autocast(device):
        for batch in track(loader, desc, total=_samples(loader), unit="statement", count=batch_size_of("text_ids")):
            logits = (
                model.nlvr2_logits(
                    batch["text_ids"].to(device),
                    batch["text_masks"].to(device),
                    batch["image_0"].to(device),
                    batch["image_1"].to(device),
                )
                .float()
                .cpu()
            )
            predicted = logits.argmax(1)
            metric.update(predicted, batch["label"])
            predictions.extend(predicted.tolist())
    return {"accuracy": 100.0 * float(metric.compute()), "samples": len(predictions), "predictions": predictions}


@torch.no_grad()
def evaluate_itm(
    model: VLMo,
    images: ImageTextDataset,
    texts: ImageTextDataset,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | None = None,
    modes: Sequence[str] = ITM_NEGATIVE_MODES,
    num_workers: int = 0,
    desc: str = "itm",
) -> dict[str, Any]:
    """Held-out ITM accuracy (percent) of ``model``'s ITM head with hard and with random negative captions.

    ``images``: the split's images (image-only :class:`ImageTextDataset`, sample ``i`` = table row ``i``);
    ``texts``: its captions (text-only, same table). Every image with a caption takes one of its captions as the
    positive (seeded choice); its negative is the positive caption of another image, drawn by the stage-3
    sampler :func:`~vlmo_pipeline.training.objectives.sample_itm_negatives` over the whole split as one batch:
    ``hard`` = softmax of the model's ITC similarities ``exp(logit_scale) · cos`` with the own pair excluded
    (the official hard negatives), ``random`` = uniform over the other images; a ``torch.Generator`` seeded with
    ``seed`` per mode. Each image thus gives two decisions, (image, positive) → match and (image, negative) → no
    match, both scored by the arg-max of ``itm_logits``: accuracy over the 2N decisions is balanced, chance 50.

    Returns per mode ``acc_<mode>_negatives`` and ``<mode>_negative_duplicate_rate`` (percent of negatives whose
    caption text equals the positive's: such a "negative" describes the image as well as the positive does), plus
    ``images`` (N), ``positives`` (caption sample index per image) and ``negatives`` (per mode: index into the
    positives of each image's negative).
    """
    device = device or default_device()
    model = model.to(device).eval()
    model._require("itm_score", "itm (held-out ITM needs the stage-3 model's ITM head)")
    if not np.array_equal(np.asarray(images.row_of_sample), np.arange(images.table.num_rows)):
        raise ValueError("evaluate_itm: images must be an image-only dataset (one sample per table row, in order)")
    caption_counts = np.bincount(np.asarray(texts.row_of_sample), minlength=images.table.num_rows)
    first_caption = np.concatenate([[0], np.cumsum(caption_counts)[:-1]])
    rows = np.flatnonzero(caption_counts > 0)
    if len(rows) < 2:
        raise ValueError(f"evaluate_itm needs at least 2 images with captions, the split has {len(rows)}")
    generator = torch.Generator().manual_seed(int(seed))
    picks = (
        (torch.rand(len(rows), generator=generator, dtype=torch.float64) * torch.as_tensor(caption_counts[rows]))
        .long()
        .numpy()
    )
    positives = (first_caption[rows] + np.minimum(picks, caption_counts[rows] - 1)).tolist()
    items = [texts[index] for index in positives]
    if any(int(item["image_index"]) != int(row) for item, row in zip(items, rows)):
        raise ValueError("evaluate_itm: the captions of a row must be consecutive samples of texts")
    captions = [item["caption"] for item in items]
    text_ids = torch.stack([item["text_ids"] for item in items])
    text_masks = torch.stack([item["text_masks"] for item in items])

    def image_batches(what: str):
        loader = DataLoader(
            Subset(images, rows.tolist()),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate,
        )
        start = 0
        for batch in track(loader, f"{desc}: {what}", total=len(rows), unit="image", count=batch_size_of("image")):
            pixels = batch["image"].to(device)
            yield start, pixels
            start += pixels.shape[0]

    with _autocast(device):
        image_feats = torch.cat([model.encode_image(pixels).float() for _, pixels in image_batches("image encoding")])
        text_feats = torch.cat(
            [
                model.encode_text(
                    text_ids[start : start + batch_size].to(device), text_masks[start : start + batch_size].to(device)
                ).float()
                for start in track(
                    range(0, len(rows), batch_size),
                    f"{desc}: caption encoding",
                    total=len(rows),
                    unit="caption",
                    count=lambda start: min(batch_size, len(rows) - start),
                )
            ]
        )
    similarities = model.logit_scale.detach().float().exp() * image_feats @ text_feats.t()  # (N, N)
    similarities = similarities.cpu()
    negatives = {}
    for mode in modes:
        mode_generator = torch.Generator().manual_seed(int(seed))
        _, negative_text = sample_itm_negatives(similarities, similarities.t(), 0, mode=mode, generator=mode_generator)
        negatives[mode] = negative_text
    correct = {"positive": [], **{mode: [] for mode in modes}}
    for start, pixels in image_batches("ITM scoring"):
        count = pixels.shape[0]
        columns = [torch.arange(start, start + count)] + [negatives[mode][start : start + count] for mode in modes]
        ids, masks = _trim_padding(text_ids[torch.cat(columns)], text_masks[torch.cat(columns)])
        with _autocast(device):
            logits = (
                model.itm_logits(ids.to(device), masks.to(device), pixels.repeat(len(columns), 1, 1, 1)).float().cpu()
            )
        predicted = logits.argmax(1).view(len(columns), count)
        correct["positive"].append(predicted[0] == 1)
        for position, mode in enumerate(modes, start=1):
            correct[mode].append(predicted[position] == 0)
    positive_correct = torch.cat(correct["positive"])
    result: dict[str, Any] = {}
    for mode in modes:
        decisions = torch.cat([positive_correct, torch.cat(correct[mode])]).float()
        result[f"acc_{mode}_negatives"] = 100.0 * float(decisions.mean())
        same = [captions[int(j)] == captions[i] for i, j in enumerate(negatives[mode].tolist())]
        result[f"{mode}_negative_duplicate_rate"] = 100.0 * sum(same) / len(same)
    result.update(
        {"images": len(rows), "positives": positives, "negatives": {mode: negatives[mode].tolist() for mode in modes}}
    )
    return result
