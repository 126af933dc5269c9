"""Evaluation metrics (spec §5.3–5.5) and their chance / majority baselines.

* :class:`VQAScore` (defined in :mod:`vlmo_pipeline.training.metrics`, which training logs from) — soft score of
  the arg-max answer, reported in **[0, 100]** (the unit of the VQA leaderboard and the paper's tables).
* :func:`retrieval_recall` — dual-encoder R@K in both directions over the full image × caption matrix,
  computed in row chunks (a 5k × 25k matrix never materialises); :class:`RetrievalRecall` accumulates
  features over batches/ranks and calls it.
* Baselines: :func:`chance_retrieval_recall` (expected R@K of a random ranking),
  :func:`majority_baseline_vqa_score`, :func:`majority_class_accuracy`.
All recalls are percentages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

# The VQA score is logged during fine-tuning too; training may not import evaluation, so it lives there.
from vlmo_pipeline.training.metrics import VQAScore, vqa_scores_of_argmax

__all__ = [
    "VQAScore",
    "vqa_scores_of_argmax",
    "retrieval_recall",
    "RetrievalRecall",
    "chance_retrieval_recall",
    "majority_baseline_vqa_score",
    "majority_class_accuracy",
    "recall_keys",
]


# --------------------------------------------------------------------------------------------------- retrieval


def recall_keys(ks: Sequence[int] = (1, 5, 10)) -> list[str]:
    """Keys produced by the recall functions: ``tr_r{k}`` …, ``ir_r{k}`` …, ``rsum``."""
    return [f"tr_r{k}" for k in ks] + [f"ir_r{k}" for k in ks] + ["rsum"]


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers; got {ks}")
    return ks


def _hits_within_k(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    is_match_of_topk,
    ks: tuple[int, ...],
    chunk_size: int,
) -> dict[int, int]:
    """For each k: number of queries with a matching gallery item among their top-k (chunked over queries)."""
    top = min(max(ks), gallery_feats.shape[0])
    hits_at = {k: 0 for k in ks}
    gallery_t = gallery_feats.float().t()
    for start in range(0, query_feats.shape[0], chunk_size):
        scores = query_feats[start : start + chunk_size].float() @ gallery_t
        topk_indices = scores.topk(top, dim=1).indices
        matched = is_match_of_topk(start, topk_indices)  # (chunk, top) bool
        found_by_rank = matched.cummax(dim=1).values  # column j: a match within the first j+1
        for k in ks:
            hits_at[k] += int(found_by_rank[:, min(k, top) - 1].sum())
    return hits_at


@torch.no_grad()
def retrieval_recall(
    image_feats: torch.Tensor,
    text_feats: torch.Tensor,
    text_to_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K of dual-encoder retrieval over the full image × text score matrix (spec §5.5), in percent.

    Args:
        image_feats: (Ni, D) image embeddings (L2-normalised: scores are plain dot products = cosine).
        text_feats: (Nt, D) caption embeddings.
        text_to_image: (Nt,) long, row of ``image_feats`` that each caption describes.
        ks: the K values.
        chunk_size: query rows scored at once (memory ~ chunk_size × max(Ni, Nt) floats).

    Returns ``tr_r{k}`` (image→text: share of images whose top-k texts contain one of its captions),
    ``ir_r{k}`` (text→image: share of captions whose top-k images contain its image) and ``rsum`` (their
    sum). Ties are broken by ``torch.topk`` as in the official code.
    """
    ks = _check_ks(ks)
    if image_feats.ndim != 2 or text_feats.ndim != 2 or image_feats.shape[1] != text_feats.shape[1]:
        raise ValueError(
            f"image_feats (Ni, D) and text_feats (Nt, D) must share D; got {tuple(image_feats.shape)} and "
            f"{tuple(text_feats.shape)}"
        )
    n_images, n_texts = image_feats.shape[0], text_feats.shape[0]
    if n_images == 0 or n_texts == 0:
        raise ValueError(f"retrieval needs at least one image and one text; got {n_images} and {n_texts}")
    text_to_image = text_to_image.to(device=text_feats.device, dtype=torch.long)
    if text_to_image.shape != (n_texts,):
        raise ValueError(f"text_to_image must be ({n_texts},); got {tuple(text_to_image.shape)}")
    if int(text_to_image.min()) < 0 or int(text_to_image.max()) >= n_images:
        raise ValueError(
            f"text_to_image values must be image rows in [0, {n_images}); got "
            f"[{int(text_to_image.min())}, {int(text_to_image.max())}]"
        )
    image_feats = image_feats.to(text_feats.device)

    def text_matches_image(start: int, topk_text_indices: torch.Tensor) -> torch.Tensor:
        image_rows = torch.arange(start, start + topk_text_indices.shape[0], device=topk_text_indices.device)
        return text_to_image[topk_text_indices] == image_rows.unsqueeze(1)

    def image_matches_text(start: int, topk_image_indices: torch.Tensor) -> torch.Tensor:
        own_images = text_to_image[start : start + topk_image_indices.shape[0]]
        return topk_image_indices == own_images.unsqueeze(1)

    text_hits = _hits_within_k(image_feats, text_feats, text_matches_image, ks, chunk_size)
    image_hits = _hits_within_k(text_feats, image_feats, image_matches_text, ks, chunk_size)
    result = {f"tr_r{k}": 100.0 * text_hits[k] / n_images for k in ks}
    result.update({f"ir_r{k}": 100.0 * image_hits[k] / n_texts for k in ks})
    result["rsum"] = sum(result.values())
    return result


def _first_occurrence_rows(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique ``ids`` and, for each, the row of its first occurrence (duplicates come from sampler
    padding under DDP and are dropped)."""
    unique_ids, inverse = torch.unique(ids, return_inverse=True)
    rows = torch.arange(ids.shape[0], device=ids.device)
    first_rows = torch.full_like(unique_ids, ids.shape[0]).scatter_reduce(0, inverse, rows, reduce="amin")
    return unique_ids, first_rows


def _is_empty(state: list[torch.Tensor] | torch.Tensor) -> bool:
    """A "cat" state is a list before synchronisation and may be one tensor after it."""
    if isinstance(state, torch.Tensor):
        return state.numel() == 0
    return len(state) == 0


class RetrievalRecall(Metric):
    """Accumulates image and text embeddings (over batches and ranks) and computes :func:`retrieval_recall`.

    Call ``update(image_feats=..., image_ids=...)`` for image batches and
    ``update(text_feats=..., text_image_ids=..., text_ids=...)`` for caption batches (both may come in the
    same call). ``image_ids`` identify images (any integers); ``text_image_ids`` give the image id each caption
    belongs to; optional ``text_ids`` let duplicated captions (DDP sampler padding) be dropped. Duplicate
    image ids are always dropped (first occurrence kept).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (1, 5, 10), chunk_size: int = 1024, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ks = _check_ks(ks)
        self.chunk_size = chunk_size
        for state in ("image_feats", "image_ids", "text_feats", "text_image_ids", "text_ids"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(  # type: ignore[override]
        self,
        image_feats: torch.Tensor | None = None,
        image_ids: torch.Tensor | None = None,
        text_feats: torch.Tensor | None = None,
        text_image_ids: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
    ) -> None:
        if (image_feats is None) != (image_ids is None):
            raise ValueError("image_feats and image_ids must be given together")
        if (text_feats is None) != (text_image_ids is None):
            raise ValueError("text_feats and text_image_ids must be given together")
        if image_feats is not None:
            if image_feats.shape[0] != image_ids.shape[0]:
                raise ValueError(f"{image_feats.shape[0]} image features but {image_ids.shape[0]} image ids")
            self.image_feats.append(image_feats.detach().float())
            self.image_ids.append(image_ids.detach().long().reshape(-1))
        if text_feats is not None:
            if text_feats.shape[0] != text_image_ids.shape[0]:
                raise ValueError(f"{text_feats.shape[0]} text features but {text_image_ids.shape[0]} image ids")
            if text_ids is not None and text_ids.shape[0] != text_feats.shape[0]:
                raise ValueError(f"{text_feats.shape[0]} text features but {text_ids.shape[0]} text ids")
            if text_ids is None and not _is_empty(self.text_ids):
                raise ValueError("text_ids were given in an earlier update; give them in every update")
            self.text_feats.append(text_feats.detach().float())
            self.text_image_ids.append(text_image_ids.detach().long().reshape(-1))
            if text_ids is not None:
                self.text_ids.append(text_ids.detach().long().reshape(-1))

    def compute(self) -> dict[str, float]:
        if _is_empty(self.image_feats) or _is_empty(self.text_feats):
            raise ValueError("RetrievalRecall needs at least one image batch and one text batch before compute()")
        image_ids, image_rows = _first_occurrence_rows(dim_zero_cat(self.image_ids))
        image_feats = dim_zero_cat(self.image_feats)[image_rows]
        text_feats = dim_zero_cat(self.text_feats)
        text_image_ids = dim_zero_cat(self.text_image_ids)
        if not _is_empty(self.text_ids):
            _, text_rows = _first_occurrence_rows(dim_zero_cat(self.text_ids))
            text_feats, text_image_ids = text_feats[text_rows], text_image_ids[text_rows]
        positions = torch.searchsorted(image_ids, text_image_ids).clamp(max=image_ids.shape[0] - 1)
        unknown = image_ids[positions] != text_image_ids
        if bool(unknown.any()):
            missing = text_image_ids[unknown].unique()[:10].tolist()
            raise ValueError(f"captions refer to image ids never given as images, e.g. {missing}")
        return retrieval_recall(image_feats, text_feats, positions, self.ks, self.chunk_size)


# --------------------------------------------------------------------------------------------------- baselines


def chance_retrieval_recall(
    n_images: int, captions_per_image: int | Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Expected recall (percent) of a uniformly random ranking, with the same keys as :func:`retrieval_recall`.

    Text→image: one correct image among ``n_images`` → ``min(k, Ni) / Ni``. Image→text: an image with ``c``
    captions among ``Nt`` texts is found within the top k with probability ``1 − C(Nt−c, k) / C(Nt, k)``
    (averaged over images when ``captions_per_image`` is a per-image sequence).
    """
    ks = _check_ks(ks)
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1; got {n_images}")
    if isinstance(captions_per_image, int):
        caption_counts = [captions_per_image] * n_images
    else:
        caption_counts = [int(count) for count in captions_per_image]
        if len(caption_counts) != n_images:
            raise ValueError(f"captions_per_image has {len(caption_counts)} entries for {n_images} images")
    if any(count < 0 for count in caption_counts) or sum(caption_counts) == 0:
        raise ValueError("caption counts must be >= 0 with at least one caption in total")
    n_texts = sum(caption_counts)

    def p_found(count: int, k: int) -> float:
        # P(none of the `count` captions among the first k of n_texts) = prod_{j<k} (Nt - count - j) / (Nt - j)
        p_missed = 1.0
        for j in range(min(k, n_texts)):
            p_missed *= max(0, n_texts - count - j) / (n_texts - j)
        return 1.0 - p_missed

    result = {f"tr_r{k}": 100.0 * sum(p_found(c, k) for c in caption_counts) / n_images for k in ks}
    result.update({f"ir_r{k}": 100.0 * min(k, n_images) / n_images for k in ks})
    result["rsum"] = sum(result.values())
    return result


def majority_baseline_vqa_score(
    train_answers: Iterable[Hashable] | torch.Tensor,
    eval_targets: torch.Tensor | Sequence[Mapping[Hashable, float]],
) -> float:
    """VQA score (percent) of always answering the most frequent training answer.

    ``train_answers``: one answer per training question (label ids or strings), or a (N, C) soft-target
    tensor (the answer with the largest total score wins). ``eval_targets``: (M, C) soft-target tensor
    (answers must then be label ids) or one ``{answer: score}`` mapping per evaluation question.
    """
    if isinstance(train_answers, torch.Tensor) and train_answers.ndim == 2:
        majority: Hashable = int(train_answers.float().sum(dim=0).argmax())
    else:
        answers = train_answers.tolist() if isinstance(train_answers, torch.Tensor) else list(train_answers)
        if not answers:
            raise ValueError("train_answers is empty: no majority answer")
        majority = Counter(answers).most_common(1)[0][0]
    if isinstance(eval_targets, torch.Tensor):
        if eval_targets.ndim != 2 or eval_targets.shape[0] == 0:
            raise ValueError(f"eval_targets must be a non-empty (M, C) tensor; got {tuple(eval_targets.shape)}")
        if not isinstance(majority, int) or not 0 <= majority < eval_targets.shape[1]:
            raise ValueError(f"majority answer {majority!r} is not a label id in [0, {eval_targets.shape[1]})")
        return 100.0 * float(eval_targets[:, majority].double().mean())
    if len(eval_targets) == 0:
        raise ValueError("eval_targets is empty")
    return 100.0 * sum(float(scores.get(majority, 0.0)) for scores in eval_targets) / len(eval_targets)


def majority_class_accuracy(train_labels: Iterable[Hashable], eval_labels: Iterable[Hashable]) -> float:
    """Accuracy (percent) on ``eval_labels`` of always predicting the most frequent training label (NLVR2)."""
    train = list(train_labels.tolist() if isinstance(train_labels, torch.Tensor) else train_labels)
    evaluation = list(eval_labels.tolist() if isinstance(eval_labels, torch.Tensor) else eval_labels)
    if not train or not evaluation:
        raise ValueError("majority_class_accuracy needs non-empty train and eval labels")
    majority = Counter(train).most_common(1)[0][0]
    return 100.0 * sum(label == majority for label in evaluation) / len(evaluation)
