"""Divergence guard: a non-finite loss or gradient norm stops the stage with an error naming stage and step.

:class:`DivergenceGuard` checks, every optimiser step, the total gradient norm of the trainable parameters just
before the optimiser would apply it (``on_before_optimizer_step``), and every batch's loss
(``on_train_batch_end``, which runs before ``ModelCheckpoint`` writes ``last.ckpt``). Either non-finite raises
:class:`TrainingDivergedError`: no NaN step reaches the weights, no checkpoint of a diverged state is written, the
Kedro node / ``python -m vlmo_pipeline.train`` fails (non-zero exit), and the previous model directory and
``last.ckpt`` stay as they were.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["TrainingDivergedError", "DivergenceGuard", "finite_or_none"]


class TrainingDivergedError(RuntimeError):
    """A training stage produced a non-finite loss, gradient norm or weight."""


def _advice(checkpoint_dir: str | None) -> str:
    kept = ""
    if checkpoint_dir:
        kept = f"; the last good checkpoint in {checkpoint_dir} and the previous model directory are kept"
    return f"training stopped{kept} (lower optim.lr, set trainer.gradient_clip_val, or check the data)"


class DivergenceGuard(Callback):
    """Raise :class:`TrainingDivergedError` on a non-finite loss or gradient norm (see module docstring)."""

    def __init__(self, name: str, checkpoint_dir: str | None = None) -> None:
        super().__init__()
        self.name, self.checkpoint_dir = name, checkpoint_dir

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        if not torch.isfinite(norm):
            raise TrainingDivergedError(
                f"{self.name}: non-finite gradient norm ({float(norm)}) at step {int(trainer.global_step) + 1}; "
                + _advice(self.checkpoint_dir)
            )

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            raise TrainingDivergedError(
                f"{self.name}: non-finite loss ({float(loss.detach())}) at step {int(trainer.global_step)} "
                f"(batch {batch_idx}); " + _advice(self.checkpoint_dir)
            )


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN / ±inf float (in nested dicts and lists) replaced by ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value
