"""Lightning callbacks of the training runs."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from vlmo_pipeline.progress import Progress

__all__ = ["StepProgress"]


class StepProgress(Callback):
    """Training progress in optimiser steps of ``max_steps`` (not epochs: the runs are step-based), with the mean
    loss since the previous update, steps/s, samples/s and ETA: a tqdm bar on a TTY, else a log line every
    ~10 % of the steps (:class:`~vlmo_pipeline.progress.Progress`). Rank zero only.

    ``samples_per_step``: samples one optimiser step consumes (batch size × accumulation × devices).
    """

    def __init__(
        self, desc: str, samples_per_step: float | None = None, mode: str = "auto", every: float = 0.1
    ) -> None:
        super().__init__()
        self.desc, self.samples_per_step, self.mode, self.every = desc, samples_per_step, mode, every
        self.progress: Progress | None = None
        self._losses: list[float] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        self._losses.clear()
        self.progress = Progress(
            total,
            self.desc,
            unit="step",
            initial=int(trainer.global_step),
            mode=self.mode,
            every=self.every,
            samples_per_unit=self.samples_per_step,
        )

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.progress is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and hasattr(loss, "detach"):
            self._losses.append(float(loss.detach()))
        step = int(trainer.global_step)
        if step != self.progress.count:
            mean_loss = sum(self._losses) / len(self._losses) if self._losses else None
            self._losses.clear()
            self.progress.set(step, loss=mean_loss)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)
