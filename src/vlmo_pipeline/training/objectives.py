"""Training objectives of VLMo on plain tensors (spec §4, §5.3, §5.4).

Every function here takes features / logits / labels and returns losses; none of them knows the model. The
LightningModules run the model passes and call these. Losses are computed in float32 (autocast is disabled
inside) so bf16/fp16 training gets fp32 softmax/log-sum-exp, like the official ``.float()`` calls.

Contents:
* ITC: :func:`contrastive_loss`, :func:`itc_loss` (two branches, features gathered across ranks *with*
  gradient; see :mod:`vlmo_pipeline.training.distributed` for why).
* ITM: :func:`sample_hard_negatives` (global hard negatives from the ITC similarities, vectorised),
  :func:`sample_itm_negatives` (hard, or uniform random negatives for the demo),
  :func:`itm_labels`, :func:`itm_loss`, :func:`itm_accuracy`.
* MLM: :func:`mlm_loss`, :data:`VL_MLM_WEIGHT`.
* Stage-1 masked image modeling: :class:`MIMTarget`, :class:`PixelRegressionTarget`, :func:`patchify`,
  :func:`mim_loss` (the block masks are drawn with the batches: :mod:`vlmo_pipeline.data.masking`).
* Fine-tuning: :func:`vqa_loss`, :func:`nlvr2_loss`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from vlmo_pipeline.training.config import ITM_NEGATIVE_MODES
from vlmo_pipeline.training.distributed import all_gather_with_grad, local_row_offset

__all__ = [
    "VL_MLM_WEIGHT",
    "IGNORE_INDEX",
    "contrastive_loss",
    "itc_loss",
    "sample_hard_negatives",
    "ITM_NEGATIVE_MODES",
    "sample_itm_negatives",
    "itm_labels",
    "itm_loss",
    "itm_accuracy",
    "mlm_loss",
    "MIMTarget",
    "PixelRegressionTarget",
    "patchify",
    "mim_loss",
    "vqa_loss",
    "nlvr2_loss",
]

#: Weight of the VL-MLM loss in stage 3 (the official ``compute_mlm`` returns ``mlm_loss * 0.25``).
#: Applied by the caller; stage-2 text-only MLM has no such factor.
VL_MLM_WEIGHT = 0.25

#: Label value ignored by the MLM cross-entropy (positions that are not masked).
IGNORE_INDEX = -100


@contextmanager
def _fp32(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` so matmuls/softmaxes inside run in the dtype of their inputs (fp32)."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


# --------------------------------------------------------------------------------------------------- ITC


def contrastive_loss(
    image_feats: torch.Tensor, text_feats: torch.Tensor, logit_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over the *global* batch (spec §4.1).

    Args:
        image_feats: (B, D) L2-normalised image features of this rank.
        text_feats: (B, D) L2-normalised text features of this rank (row b pairs with image row b).
        logit_scale: scalar parameter; the temperature is ``exp(logit_scale)`` (no clamp, as the official code).

    Returns:
        ``(loss, logits_per_image, logits_per_text)``: loss = (CE(i2t) + CE(t2i)) / 2 in fp32 with labels
        ``arange(N)``; the logits are the global (N, N) matrices (rows = gathered images resp. texts in rank
        order, N = sum of the ranks' batch sizes). Features are gathered *with* gradient, so on every rank
        the loss equals the single-process loss on the concatenated batch.
    """
    if image_feats.ndim != 2 or text_feats.ndim != 2 or image_feats.shape != text_feats.shape:
        raise ValueError(
            "contrastive_loss expects image and text features of the same shape (B, D); got "
            f"{tuple(image_feats.shape)} and {tuple(text_feats.shape)}"
        )
    all_image = all_gather_with_grad(image_feats)
    all_text = all_gather_with_grad(text_feats)
    with _fp32(image_feats.device):
        scale = logit_scale.float().exp()
        logits_per_image = scale * all_image.float() @ all_text.float().t()
        logits_per_text = logits_per_image.t()
        labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    return loss, logits_per_image, logits_per_text


def _diagonal_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose argmax is the diagonal (detached, no host sync)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (logits.detach().argmax(dim=1) == labels).float().mean()


def itc_loss(
    image_feats: torch.Tensor,
    text_feats: torch.Tensor,
    image_vl_feats: torch.Tensor,
    text_vl_feats: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_vl_scale: torch.Tensor,
) -> dict[str, torch.Tensor | int]:
    """The two pretraining contrastive losses (modality-expert path and VL-FFN path), spec §4.1.

    Returns a dict:
        ``loss``: 0.5 · (itc + itc_vl), the value to add to the stage-3 total;
        ``itc_loss`` / ``itc_vl_loss``: the two parts;
        ``logits_per_image`` / ``logits_per_text``: global (N, N) logits of the modality-expert path — the
        ones the official ITM uses to sample hard negatives (spec §4.2);
        ``vl_logits_per_image`` / ``vl_logits_per_text``: the VL-FFN path logits;
        ``local_offset``: index of this rank's first row in the gathered batch (int);
        ``i2t_accuracy`` / ``t2i_accuracy``: in-batch retrieval accuracy of the expert path (detached).
    """
    itc, logits_per_image, logits_per_text = contrastive_loss(image_feats, text_feats, logit_scale)
    itc_vl, vl_logits_per_image, vl_logits_per_text = contrastive_loss(image_vl_feats, text_vl_feats, logit_vl_scale)
    return {
        "loss": 0.5 * (itc + itc_vl),
        "itc_loss": itc,
        "itc_vl_loss": itc_vl,
        "logits_per_image": logits_per_image,
        "logits_per_text": logits_per_text,
        "vl_logits_per_image": vl_logits_per_image,
        "vl_logits_per_text": vl_logits_per_text,
        "local_offset": local_row_offset(image_feats.shape[0], image_feats.device),
        "i2t_accuracy": _diagonal_accuracy(logits_per_image),
        "t2i_accuracy": _diagonal_accuracy(logits_per_text),
    }


# --------------------------------------------------------------------------------------------------- ITM


@torch.no_grad()
def _sample_one_negative_per_row(
    logits_local_rows: torch.Tensor, local_offset: int, generator: torch.Generator | None
) -> torch.Tensor:
    batch, n_global = logits_local_rows.shape
    rows = torch.arange(batch, device=logits_local_rows.device)
    own_columns = rows + local_offset
    # Masking the own pair with -inf before the softmax gives the same distribution as the official
    # "softmax, then zero the diagonal" (multinomial renormalises), without the other weights underflowing
    # to zero when the positive logit dominates.
    masked = logits_local_rows.detach().float().clone()
    masked[rows, own_columns] = float("-inf")
    weights = torch.softmax(masked, dim=1)
    # Rows with no usable weight (all others -inf, NaN or inf logits) fall back to uniform over the others.
    usable = torch.isfinite(weights).all(dim=1) & (weights.sum(dim=1) > 0)
    uniform = torch.ones_like(weights)
    uniform[rows, own_columns] = 0.0
    weights = torch.where(usable.unsqueeze(1), weights, uniform)
    return torch.multinomial(weights, num_samples=1, generator=generator).squeeze(1)


def sample_hard_negatives(
    logits_per_image_local_rows: torch.Tensor,
    logits_per_text_local_rows: torch.Tensor,
    local_offset: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one hard negative per local sample from the ITC similarities (spec §4.2), vectorised.

    Args:
        logits_per_image_local_rows: (B, N) rows ``local_offset … local_offset+B-1`` of the global
            image→text logits (this rank's images against every gathered text).
        logits_per_text_local_rows: (B, N) the same rows of the text→image logits.
        local_offset: global index of this rank's first sample (``itc_loss(...)["local_offset"]``).
        generator: optional ``torch.Generator`` on the logits' device, for reproducible draws.

    Returns:
        ``(neg_image_index_for_each_text, neg_text_index_for_each_image)``, each (B,) long: *global*
        indices into the gathered batch, never the sample's own pair. Sampling weights are
        ``softmax`` of the logits in fp32 (temperature included) with the own pair excluded; one
        ``torch.multinomial`` call per direction, no host synchronisation.
    """
    for name, logits in (
        ("logits_per_image_local_rows", logits_per_image_local_rows),
        ("logits_per_text_local_rows", logits_per_text_local_rows),
    ):
        if logits.ndim != 2:
            raise ValueError(f"{name} must be (B, N_global); got shape {tuple(logits.shape)}")
    if logits_per_image_local_rows.shape != logits_per_text_local_rows.shape:
        raise ValueError(
            "image and text logit rows must have the same shape; got "
            f"{tuple(logits_per_image_local_rows.shape)} and {tuple(logits_per_text_local_rows.shape)}"
        )
    batch, n_global = logits_per_image_local_rows.shape
    if n_global < 2:
        raise ValueError(
            f"hard-negative sampling needs at least 2 samples in the global batch; got N_global={n_global} "
            "(no negative exists: use a per-device batch > 1 or more devices)"
        )
    if not 0 <= local_offset <= n_global - batch:
        raise ValueError(
            f"local_offset={local_offset} is out of range for {batch} local rows in a global batch of {n_global}"
        )
    neg_text_for_each_image = _sample_one_negative_per_row(logits_per_image_local_rows, local_offset, generator)
    neg_image_for_each_text = _sample_one_negative_per_row(logits_per_text_local_rows, local_offset, generator)
    return neg_image_for_each_text, neg_text_for_each_image


def sample_itm_negatives(
    logits_per_image_local_rows: torch.Tensor,
    logits_per_text_local_rows: torch.Tensor,
    local_offset: int,
    mode: str = "hard",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM negatives in ``mode`` ``hard`` (:func:`sample_hard_negatives`, official) or ``random``: the same
    sampler with equal weights, i.e. uniform over the other pairs of the global batch (own pair still excluded)."""
    if mode == "random":
        logits_per_image_local_rows = torch.zeros_like(logits_per_image_local_rows)
        logits_per_text_local_rows = torch.zeros_like(logits_per_text_local_rows)
    elif mode not in ITM_NEGATIVE_MODES:
        raise ValueError(f"ITM negative mode must be 'hard' or 'random'; got {mode!r}")
    return sample_hard_negatives(logits_per_image_local_rows, logits_per_text_local_rows, local_offset, generator)


def itm_labels(batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """ITM labels for logits stacked as [positives (B), negative images (B), negative texts (B)]: 1, 0, 0."""
    labels = torch.zeros(3 * batch_size, dtype=torch.long, device=device)
    labels[:batch_size] = 1
    return labels


def _check_itm_logits(itm_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if itm_logits.ndim != 2 or itm_logits.shape[1] != 2:
        raise ValueError(f"itm_logits must be (rows, 2); got shape {tuple(itm_logits.shape)}")
    if labels is not None:
        if labels.shape != itm_logits.shape[:1]:
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {itm_logits.shape[0]} logit rows")
        return labels
    if itm_logits.shape[0] % 3 != 0:
        raise ValueError(
            f"without explicit labels itm_logits must stack [pos; neg image; neg text] (3B rows); "
            f"got {itm_logits.shape[0]} rows"
        )
    return itm_labels(itm_logits.shape[0] // 3, itm_logits.device)


def itm_loss(itm_logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Plain 2-way cross-entropy of the ITM head (no class weights), fp32.

    ``itm_logits`` is (3B, 2) stacked as [positive pairs; (negative image, text); (image, negative text)];
    the labels default to :func:`itm_labels` (``[1]*B + [0]*2B``). Pass ``labels`` for any other layout.
    """
    labels = _check_itm_logits(itm_logits, labels)
    with _fp32(itm_logits.device):
        return F.cross_entropy(itm_logits.float(), labels)


@torch.no_grad()
def itm_accuracy(itm_logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Share of ITM rows whose argmax equals the label (same label convention as :func:`itm_loss`)."""
    labels = _check_itm_logits(itm_logits, labels)
    return (itm_logits.argmax(dim=1) == labels).float().mean()


# --------------------------------------------------------------------------------------------------- MLM


def mlm_loss(mlm_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked-language-modeling cross-entropy over the positions whose label is not -100 (fp32).

    Args:
        mlm_logits: (B, L, V) vocabulary logits for every text position.
        labels: (B, L) original token ids at masked positions, ``-100`` elsewhere.

    Returns the mean CE over labelled positions. When the batch has no labelled position at all (possible:
    whole-word masking can pick only PAD positions for short captions, spec §4.3) the loss is ``0`` but still
    attached to the graph (``0 × logits``), so backward and DDP see every parameter used instead of a NaN.
    The stage-3 weight :data:`VL_MLM_WEIGHT` is applied by the caller.
    """
    if mlm_logits.ndim != 3 or labels.shape != mlm_logits.shape[:2]:
        raise ValueError(
            f"mlm_logits must be (B, L, V) and labels (B, L); got {tuple(mlm_logits.shape)} and {tuple(labels.shape)}"
        )
    with _fp32(mlm_logits.device):
        flat_logits = mlm_logits.reshape(-1, mlm_logits.shape[-1]).float()
        flat_labels = labels.reshape(-1)
        summed = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
        # Division by a clamped count instead of reduction="mean": identical when something is labelled, and
        # 0 (not NaN) otherwise — without a data-dependent branch (no host sync).
        n_labelled = (flat_labels != IGNORE_INDEX).sum().clamp(min=1)
        return summed / n_labelled


# --------------------------------------------------------------------------------------------------- MIM


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) → (B, (H/p)·(W/p), p·p·C); patches row-major, pixels inside a patch ordered (row, col, C)."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W); got shape {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not divisible by patch_size={patch_size}")
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1)  # B, gh, gw, p_row, p_col, C
    return patches.reshape(batch, grid_h * grid_w, patch_size * patch_size * channels)


@runtime_checkable
class MIMTarget(Protocol):
    """What the stage-1 head regresses/classifies for each patch: ``(images (B,3,H,W), patch_size) → (B,N,T)``.

    The default is :class:`PixelRegressionTarget`; a visual tokenizer (BEiT's dVAE) would return token ids
    and pair with a cross-entropy loss instead of :func:`mim_loss`.
    """

    def __call__(self, images: torch.Tensor, patch_size: int) -> torch.Tensor: ...


class PixelRegressionTarget:
    """Pixels of every patch as regression target; with ``normalize_per_patch`` each patch is standardised
    by its own mean and variance (MAE's ``norm_pix_loss``: ``(x - mean) / sqrt(var + eps)``)."""

    def __init__(self, normalize_per_patch: bool = True, eps: float = 1e-6) -> None:
        self.normalize_per_patch = normalize_per_patch
        self.eps = eps

    def target_dim(self, patch_size: int, channels: int = 3) -> int:
        """T = p·p·C, the output width the stage-1 prediction head needs."""
        return patch_size * patch_size * channels

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, patch_size: int) -> torch.Tensor:
        patches = patchify(images.float(), patch_size)
        if not self.normalize_per_patch:
            return patches
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, unbiased=True, keepdim=True)
        return (patches - mean) / torch.sqrt(var + self.eps)

    def __repr__(self) -> str:
        return f"PixelRegressionTarget(normalize_per_patch={self.normalize_per_patch}, eps={self.eps})"


def mim_loss(predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked patches only (fp32).

    Per patch the squared error is averaged over its T values, then averaged over patches where ``mask`` is
    True. Returns ``0`` attached to the graph when nothing is masked.
    """
    if predictions.shape != targets.shape or predictions.ndim != 3:
        raise ValueError(
            f"predictions and targets must both be (B, N, T); got {tuple(predictions.shape)} and {tuple(targets.shape)}"
        )
    if mask.shape != predictions.shape[:2]:
        raise ValueError(f"mask must be (B, N) = {tuple(predictions.shape[:2])}; got {tuple(mask.shape)}")
    with _fp32(predictions.device):
        per_patch = (predictions.float() - targets.float()).pow(2).mean(dim=-1)
        weights = mask.to(per_patch.dtype)
        return (per_patch * weights).sum() / weights.sum().clamp(min=1.0)


# --------------------------------------------------------------------------------------------------- tasks


def vqa_loss(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """``BCEWithLogits(mean over B×C) × C`` with soft targets (BAN-VQA convention, spec §5.3), fp32."""
    if logits.shape != soft_targets.shape or logits.ndim != 2:
        raise ValueError(
            f"logits and soft_targets must both be (B, num_labels); got {tuple(logits.shape)} and "
            f"{tuple(soft_targets.shape)}"
        )
    with _fp32(logits.device):
        return F.binary_cross_entropy_with_logits(logits.float(), soft_targets.float()) * logits.shape[1]


def nlvr2_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """2-way cross-entropy of the NLVR2 head (label 1 = statement true), fp32."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (B, 2) and labels (B,); got {tuple(logits.shape)}, {tuple(labels.shape)}")
    with _fp32(logits.device):
        return F.cross_entropy(logits.float(), labels.long())
