"""Optimiser and learning-rate schedule as in the official ``vlmo_utils.set_schedule`` (spec §5.1).

* Parameter groups are formed by **substring** match on parameter names, reproducing the official quirks
  exactly: every name containing ``"bias"`` is exempt from weight decay — including ``q_bias``/``v_bias`` and
  the ``relative_position_bias_table`` — while ``norm2_text.weight`` / ``norm2_imag.weight`` /
  ``norm2_vl.weight`` (which do not contain ``"norm2.weight"``), ``gamma_1/2``, ``cls_token``, the logit
  scales, all embeddings and the LayerNorm inside ``vqa_classifier``/``nlvr2_classifier`` (``.1.weight``)
  *are* decayed.
* Task heads (``vqa_classifier``, ``nlvr2_classifier``) get ``lr × lr_mult``. No layer-wise lr decay.
* AdamW with decoupled weight decay, betas (0.9, 0.98), eps 1e-8 (``torch.optim.AdamW`` matches
  ``transformers.AdamW(correct_bias=True)``).
* Linear warm-up, then linear decay to 0, stepped every optimiser step (HF polynomial schedule, power 1).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

# The settings live with the other run settings (torch-free, so configuration never loads torch); re-exported here.
from vlmo_pipeline.training.config import OFFICIAL_HEAD_NAMES, OFFICIAL_NO_DECAY_SUBSTRINGS, OptimConfig

__all__ = [
    "OFFICIAL_NO_DECAY_SUBSTRINGS",
    "OFFICIAL_HEAD_NAMES",
    "OptimConfig",
    "param_groups",
    "build_optimizer",
    "resolve_warmup_steps",
    "linear_warmup_decay",
    "configure_optimization",
]


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.01,
    lr_mult: float = 1.0,
    head_names: tuple[str, ...] = OFFICIAL_HEAD_NAMES,
    no_decay_substrings: tuple[str, ...] = OFFICIAL_NO_DECAY_SUBSTRINGS,
) -> list[dict]:
    """The official four AdamW parameter groups, trainable parameters only.

    Groups (each dict has ``name``, ``params``, ``param_names``, ``weight_decay``, ``lr``; empty groups are
    left out): ``decay`` (wd, lr), ``no_decay`` (0, lr), ``head_decay`` (wd, lr·lr_mult),
    ``head_no_decay`` (0, lr·lr_mult). A name is "no decay" if it contains any of ``no_decay_substrings``
    and "head" if it contains any of ``head_names`` — plain substring tests, like the official code.
    Frozen parameters (``requires_grad=False``) are skipped; the official code lists them too but AdamW
    never touches a parameter without gradient, so the result is the same.
    """
    buckets: dict[str, tuple[list[str], list[nn.Parameter], float, float]] = {
        "decay": ([], [], weight_decay, lr),
        "no_decay": ([], [], 0.0, lr),
        "head_decay": ([], [], weight_decay, lr * lr_mult),
        "head_no_decay": ([], [], 0.0, lr * lr_mult),
    }
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay = any(substring in name for substring in no_decay_substrings)
        is_head = any(head in name for head in head_names)
        bucket = ("head_" if is_head else "") + ("no_decay" if no_decay else "decay")
        buckets[bucket][0].append(name)
        buckets[bucket][1].append(parameter)
    return [
        {"name": bucket, "params": params, "param_names": names, "weight_decay": group_wd, "lr": group_lr}
        for bucket, (names, params, group_wd, group_lr) in buckets.items()
        if params
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over :func:`param_groups` with the config's betas/eps (decoupled decay)."""
    groups = param_groups(
        model,
        lr=config.lr,
        weight_decay=config.weight_decay,
        lr_mult=config.lr_mult,
        head_names=config.head_names,
        no_decay_substrings=config.no_decay_substrings,
    )
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameter (all requires_grad=False)")
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def resolve_warmup_steps(warmup: int | float, total_steps: int) -> int:
    """Warm-up in steps: an int is taken as is, a float in [0, 1] as ``int(total_steps × warmup)``."""
    if isinstance(warmup, bool):
        raise TypeError("warmup must be an int (steps) or a float fraction, not a bool")
    if isinstance(warmup, float):
        if not 0.0 <= warmup <= 1.0:
            raise ValueError(f"a float warmup is a fraction of total steps and must be in [0, 1]; got {warmup}")
        return int(total_steps * warmup)
    if warmup < 0:
        raise ValueError(f"warmup steps must be >= 0; got {warmup}")
    return int(warmup)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int | float, total_steps: int) -> LambdaLR:
    """LambdaLR: factor ``step / warmup`` during warm-up, then linear decay to 0 at ``total_steps``.

    Same curve as ``transformers.get_polynomial_decay_schedule_with_warmup(power=1, lr_end=0)``; steps after
    ``total_steps`` stay at 0. Step the scheduler once per optimiser step.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}")
    warmup = resolve_warmup_steps(warmup_steps, total_steps)
    if warmup > total_steps:
        raise ValueError(f"warmup ({warmup} steps) is longer than training ({total_steps} steps)")
    decay_steps = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if step >= total_steps:
            return 0.0
        return 1.0 - (step - warmup) / decay_steps

    return LambdaLR(optimizer, factor)


def configure_optimization(model: nn.Module, config: OptimConfig, total_steps: int) -> dict:
    """Optimizer + per-step scheduler in the dict form Lightning's ``configure_optimizers`` returns."""
    optimizer = build_optimizer(model, config)
    scheduler = linear_warmup_decay(optimizer, config.warmup, total_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
