"""Memory options of a training run.

* Gradient accumulation (`trainer.accumulate_grad_batches`): ``max_steps`` and the learning-rate schedule count
  optimiser steps, not micro-batches, for step- and epoch-bounded runs (ViLT #19 decayed over micro-batches, so its
  learning rate never reached the end of its schedule).
* Activation checkpointing (`trainer.activation_checkpointing`): the same trained weights as without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlmo_pipeline.models import VLMo
from vlmo_pipeline.training.runner import train

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401


def _last_checkpoint(config) -> dict:
    return torch.load(config.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("bound", ["steps", "epochs"])
def test_schedule_counts_optimizer_steps(tiny_world: Path, tmp_path: Path, bound: str):
    trainer = {"accumulate_grad_batches": 2, "log_every_n_steps": 1, "progress_bar": False}
    if bound == "steps":
        trainer.update(max_steps=3, checkpoint_every_n_steps=1)
    else:
        trainer.update(max_steps=-1, max_epochs=1, checkpoint_every_n_steps=1)
    config = tiny_run("stage1", tiny_world, tmp_path, trainer=trainer, optim={"lr": 1e-3, "warmup": 1})
    config.data.batch_size = 2  # 8 training images: 4 micro-batches, 2 optimiser steps per epoch
    outcome = train(config)
    checkpoint = _last_checkpoint(config)
    steps = outcome.summary["global_step"]
    assert steps == (3 if bound == "steps" else 2)
    scheduler = checkpoint["lr_schedulers"][0]
    assert scheduler["last_epoch"] == steps, "the scheduler steps once per optimiser step"
    assert scheduler["_last_lr"] == [0.0] * len(scheduler["_last_lr"]), "the schedule ends at its end"
    # "ready": batches fetched (last.ckpt is written inside the last batch's end hook, before it counts as completed)
    batches = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"]
    assert batches == 2 * steps, "each optimiser step consumed two micro-batches"


def test_activation_checkpointing_trains_the_same_weights(tiny_world: Path, tmp_path: Path):
    weights = []
    for enabled in (False, True):
        trainer = {"max_steps": 3, "log_every_n_steps": 1, "progress_bar": False, "activation_checkpointing": enabled}
        config = tiny_run("stage1", tiny_world, tmp_path / str(enabled), trainer=trainer)
        config.model_overrides["drop_path_rate"] = 0.1  # randomness inside the recomputed blocks
        model = train(config).model
        assert model.activation_checkpointing is enabled
        model.save_pretrained(tmp_path / f"model-{enabled}")
        weights.append(VLMo.from_pretrained(tmp_path / f"model-{enabled}").state_dict())
    plain, recomputed = weights
    for name, tensor in plain.items():
        torch.testing.assert_close(recomputed[name], tensor, rtol=0, atol=1e-6, msg=name)
