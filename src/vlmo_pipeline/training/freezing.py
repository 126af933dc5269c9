"""Which parameters train in each pretraining stage (spec §4.4), by substring of the parameter name.

Stage 2 (official ``run.py``): everything frozen, then unfrozen if the name contains any of
:data:`STAGE2_TRAINABLE`. Shared attention, ``norm1``, ``gamma_1/2``, the V-FFN, patch embedding and image
CLS token stay frozen. The whole ``relative_position_bias_table`` is trainable, but text passes only index
its text rows, so only those rows get a gradient (and the table is in the no-weight-decay group, so the
image rows do not drift either) — no gradient hook is needed.

Stage 1 has no official code (the official recipe downloads a BEiT checkpoint). Our masked-image-modeling
stage trains what a BEiT image encoder consists of — attention, ``norm1``, layer-scale gammas, patch
embedding, image CLS token (and absolute position embedding for base-plus-like models), V-FFN and its norm,
the relative-position table (only image rows are indexed), the final norm — plus the MIM mask token and
prediction head (the model's ``transformer.mask_token``; the stage-1 module must name its head ``mim_head``).
Everything text-side (text embeddings, L-FFN, ``norm2_text``, MLM head), the token-type embeddings and the
VL-FFN stay frozen: they do not take part in image-only passes, and freezing them makes the stage's frozen
set explicit and testable, mirroring stage 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the run configuration imports the stage rules without loading torch
    from torch import nn

__all__ = [
    "STAGE1_TRAINABLE",
    "STAGE2_TRAINABLE",
    "MIM_MASK_TOKEN_NAME",
    "MIM_HEAD_NAME",
    "apply_trainable_substrings",
    "unmatched_substrings",
    "freeze_report",
]

#: Official stage-2 (text-only MLM) trainable substrings, ``run.py``.
STAGE2_TRAINABLE: tuple[str, ...] = (
    "text_embeddings",
    "token_type_embeddings",
    "mlp_text",
    "norm2_text",
    "mlm_score",
    "relative_position_bias_table",
    "transformer.norm",
)

#: Attribute names the stage-1 module must use for its MIM mask token and prediction head.
MIM_MASK_TOKEN_NAME = "transformer.mask_token"  # created by VLMo when "mim" is in loss_names
MIM_HEAD_NAME = "mim_head"

#: Our stage-1 (image-only MIM) trainable substrings; see the module docstring for the rationale.
#: ``transformer.pos_embed`` only exists in models with an absolute image position embedding.
STAGE1_TRAINABLE: tuple[str, ...] = (
    "attn.",
    "norm1",
    "gamma_1",
    "gamma_2",
    "patch_embed",
    "transformer.cls_token",
    "transformer.pos_embed",
    "mlp_imag",
    "norm2_imag",
    "relative_position_bias_table",
    "transformer.norm",
    MIM_MASK_TOKEN_NAME,
    MIM_HEAD_NAME,
)


def unmatched_substrings(model: nn.Module, substrings: Iterable[str]) -> list[str]:
    """The substrings that match no parameter name of ``model`` (to catch renamed modules early)."""
    names = [name for name, _ in model.named_parameters()]
    return [substring for substring in substrings if not any(substring in name for name in names)]


def apply_trainable_substrings(
    model: nn.Module, substrings: Iterable[str], require_all_match: bool = False
) -> list[str]:
    """Freeze every parameter, then unfreeze those whose name contains any of ``substrings``.

    Returns the names of the trainable parameters (in ``named_parameters`` order). With
    ``require_all_match`` a substring matching no parameter raises ``ValueError`` (a typo or a renamed
    module would otherwise silently leave that part frozen).
    """
    substrings = tuple(substrings)
    if require_all_match:
        missing = unmatched_substrings(model, substrings)
        if missing:
            raise ValueError(f"trainable substrings {missing} match no parameter of {type(model).__name__}")
    trainable: list[str] = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(substring in name for substring in substrings))
        if parameter.requires_grad:
            trainable.append(name)
    return trainable


def freeze_report(model: nn.Module) -> dict[str, int]:
    """Counts of trainable/frozen parameter tensors and scalar parameters."""
    report = {"trainable_tensors": 0, "frozen_tensors": 0, "trainable_params": 0, "frozen_params": 0}
    for _name, parameter in model.named_parameters():
        kind = "trainable" if parameter.requires_grad else "frozen"
        report[f"{kind}_tensors"] += 1
        report[f"{kind}_params"] += parameter.numel()
    return report
