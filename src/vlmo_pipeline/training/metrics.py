"""Metrics that training logs (and the evaluation reuses): the VQA soft score (spec §5.3).

The evaluation (:mod:`vlmo_pipeline.evaluation.metrics`) imports them from here: training must not import the
evaluation package.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

__all__ = ["VQAScore", "vqa_scores_of_argmax"]


def vqa_scores_of_argmax(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """(B,) soft target score of each question's arg-max answer (official ``VQAScore`` per sample, in [0, 1])."""
    if logits.ndim != 2 or logits.shape != soft_targets.shape:
        raise ValueError(
            f"logits and soft_targets must both be (B, num_labels); got {tuple(logits.shape)} and "
            f"{tuple(soft_targets.shape)}"
        )
    predicted = logits.argmax(dim=1, keepdim=True)
    return soft_targets.float().gather(1, predicted).squeeze(1)


class VQAScore(Metric):
    """VQA accuracy: mean soft score of the predicted (arg-max) answer, ×100 (range [0, 100])."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, soft_targets: torch.Tensor) -> None:  # type: ignore[override]
        scores = vqa_scores_of_argmax(logits.detach(), soft_targets.detach())
        self.score_sum += scores.double().sum()
        self.count += scores.shape[0]

    def compute(self) -> torch.Tensor:
        """Score in percent; 0 when nothing was seen."""
        return 100.0 * self.score_sum / self.count.clamp(min=1)
