"""Run one training stage / fine-tuning task end to end: the Lightning Trainer and :func:`train`.

``train(config)`` is the single code path behind the Kedro nodes (one device, in-process) and
``python -m vlmo_pipeline.train`` (any number of devices, e.g. under ``torchrun``):

1. seed everything; load the tokenizer and build the starting model with this stage's heads, then freeze
   everything outside ``config.trainable`` (:mod:`vlmo_pipeline.training.setup`);
2. fit with a CSV logger in ``config.log_dir``, a step progress callback (``trainer.progress_bar``; see
   :mod:`vlmo_pipeline.progress`), the strategy of ``trainer.strategy`` (:mod:`vlmo_pipeline.training.strategies`)
   and a ``ModelCheckpoint`` writing ``last.ckpt`` to ``<output_dir>/lightning``, resumed only when it belongs to
   the same run (:mod:`vlmo_pipeline.training.resume`);
3. write ``trainable_parameters.md`` / ``.json`` (:mod:`vlmo_pipeline.training.parameter_table`) into
   ``config.log_dir``, beside Lightning's ``hparams.yaml`` and ``metrics.csv``, and return the outcome, which
   :func:`~vlmo_pipeline.training.export.save_outcome` writes as the model directory.

The names of the set-up, resume and export modules that callers used from here are re-exported.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from vlmo_pipeline.data.datasets import ANSWER_VOCAB_FILE
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.vlmo import describe_non_finite, non_finite_tensors
from vlmo_pipeline.training.callbacks import StepProgress
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.datamodules import VLMoDataModule
from vlmo_pipeline.training.export import (
    SUMMARY_FILE,
    TrainOutcome,
    loss_history,
    loss_trend,
    save_outcome,
)
from vlmo_pipeline.training.guards import DivergenceGuard, TrainingDivergedError, finite_or_none
from vlmo_pipeline.training.logs import configure_training_logs
from vlmo_pipeline.training.modules import build_module
from vlmo_pipeline.training.parameter_table import TABLE_NAME, trainable_parameter_table, write_parameter_table
from vlmo_pipeline.training.resume import (
    FINGERPRINT_FILE,
    StaleCheckpointError,
    fingerprint_differences,
    merge_logs,
    resume_checkpoint,
    run_fingerprint,
    set_aside_log,
)
from vlmo_pipeline.training.sampling import ResumeStateCallback
from vlmo_pipeline.training.setup import (
    answer_vocab,
    apply_freezing,
    prepare_model,
    resolve_vocab_file,
    resolved_precision,
)
from vlmo_pipeline.training.strategies import build_strategy, exported_model, full_state_dict

__all__ = [
    "TrainOutcome",
    "resolve_vocab_file",
    "prepare_model",
    "build_trainer",
    "train",
    "save_outcome",
    "loss_history",
    "SUMMARY_FILE",
    "FINGERPRINT_FILE",
    "StaleCheckpointError",
    "run_fingerprint",
    "fingerprint_differences",
]

logger = logging.getLogger(__name__)


configure_training_logs()


# ---------------------------------------------------------------------------------------------- trainer
def build_trainer(config: RunConfig, extra_callbacks: list[Any] | None = None) -> L.Trainer:
    """Lightning Trainer with CSV logging in ``log_dir`` and ``last.ckpt`` in ``<output_dir>/lightning``."""
    settings = config.trainer
    checkpoint = ModelCheckpoint(
        dirpath=config.checkpoint_dir,
        filename="step{step}",
        auto_insert_metric_name=False,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=settings.checkpoint_every_n_steps,
    )
    samples_per_step = config.data.batch_size * settings.accumulate_grad_batches * settings.devices * settings.num_nodes
    progress = [StepProgress(config.name, samples_per_step=samples_per_step)] if settings.progress_bar else []
    guard = DivergenceGuard(config.name, str(config.checkpoint_dir))
    return L.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=build_strategy(config, resolved_precision(config)),  # trainer.strategy: ddp (or one device) / fsdp
        precision=resolved_precision(config),
        max_steps=settings.max_steps,
        max_epochs=settings.max_epochs if settings.max_steps == -1 else -1,
        accumulate_grad_batches=settings.accumulate_grad_batches,
        gradient_clip_val=settings.gradient_clip_val,
        log_every_n_steps=settings.log_every_n_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        # Lightning's bar counts epochs ("Epoch 0/-2" with max_steps) and is unreadable in a log file;
        # StepProgress shows steps of max_steps (a bar on a TTY, log lines elsewhere).
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=settings.deterministic,
        logger=CSVLogger(save_dir=config.log_dir, name="", version=""),
        callbacks=[guard, *(extra_callbacks or []), checkpoint, *progress],
        # Where Lightning's SLURM auto-requeue saves hpc_ckpt_<n>.ckpt on SIGUSR1 (see _resume_checkpoint).
        default_root_dir=config.checkpoint_dir,
    )


# ------------------------------------------------------------------------------------------------ train
def train(config: RunConfig) -> TrainOutcome:
    """Train one stage/task as configured and return the trained model and a summary (see module docstring)."""
    if not config.output_dir or not config.log_dir:  # the catalog (or the command line) names them; no default
        raise ValueError(
            f"{config.name}: output_dir and log_dir must be set (got {config.output_dir!r}, {config.log_dir!r})"
        )
    started = time.time()
    configure_training_logs()  # again: the caller may have configured logging after this module was imported
    L.seed_everything(config.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    # On the CPU, subnormal floats (e.g. Adam's second moments of nearly-zero gradients late in a run) make
    # every op touching them many times slower; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(True)
    vocab_file = resolve_vocab_file(config)
    tokenizer = VLMoTokenizer(vocab_file, lowercase=True, max_len=config.data.max_text_len)
    model = prepare_model(config, tokenizer.vocab_size)
    model.set_activation_checkpointing(config.trainer.activation_checkpointing)
    if config.data.max_text_len > model.config.max_text_len:
        raise ValueError(
            f"{config.name}: data.max_text_len={config.data.max_text_len} exceeds the model's "
            f"max_text_len={model.config.max_text_len}"
        )
    module = build_module(model, config)
    parameter_counts = apply_freezing(module, config)
    table = trainable_parameter_table(module, run=config.name, stage=config.stage, rule=config.trainable)
    totals = table["totals"]
    logger.info(
        "%s: %s of %s parameters trainable (%.1f %%), frozen: %s",
        config.name,
        f"{totals['trainable']:,}",
        f"{totals['total']:,}",
        totals["trainable_percent"],
        ", ".join(row["group"] for row in table["groups"] if row["state"] == "frozen") or "nothing",
    )
    datamodule = VLMoDataModule(
        config,
        tokenizer,
        image_size=model.config.image_size,
        patch_size=model.config.patch_size,
        answer_vocab_size=model.config.vqa_num_labels if config.stage == "vqa" else None,
    )
    # Saves / restores the global RNGs with last.ckpt and counts trained batches for the resumable sampler.
    trainer = build_trainer(config, [ResumeStateCallback(lambda: datamodule.train_sampler)])
    fingerprint = run_fingerprint(config, vocab_file)
    resume_from = resume_checkpoint(config, fingerprint, trainer.is_global_zero)
    earlier_log = set_aside_log(config) if resume_from and trainer.is_global_zero else None
    with warnings.catch_warnings():
        if resume_from:
            # A resumed run's log_dir holds its own earlier files (hparams.yaml, summary, parameter tables; the
            # CSV log set aside above and merged back below): Lightning's "exists and is not empty. Previous log
            # files ... will be deleted" warning is moot here.
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.is_global_zero:  # a finished run's last.ckpt supersedes the preemption checkpoints (full size each)
        for preempted in config.checkpoint_dir.glob("hpc_ckpt_*.ckpt"):
            preempted.unlink()
    if earlier_log is not None:
        merge_logs(earlier_log, Path(config.log_dir) / "metrics.csv")
    state = full_state_dict(trainer, module)  # under fsdp: gathered by all ranks onto rank 0
    bad = non_finite_tensors(state)
    if bad:  # the guard stops NaN losses and gradients; this catches anything else (e.g. an inf weight)
        raise TrainingDivergedError(
            f"{config.name}: after step {int(trainer.global_step)} {describe_non_finite(bad, len(state))}"
            "; nothing is exported (the previous model directory stays)"
        )
    if trainer.is_global_zero and config.trainer.strategy == "fsdp":
        model = exported_model(model, state)  # the trained one holds its shard; this copy the gathered weights
    if trainer.is_global_zero:  # after the fit: a fresh start empties log_dir, and Lightning's CSV logger warns
        write_parameter_table(table, config.log_dir)  # about a non-empty one

    history = loss_history(config.log_dir)
    summary = {
        "stage": config.stage,
        "name": config.name,
        "global_step": int(trainer.global_step),
        "resumed_from": str(resume_from) if resume_from else None,
        "train_samples": len(datamodule.train_dataset),
        "seconds": round(time.time() - started, 1),
        "log_csv": str(Path(config.log_dir) / "metrics.csv"),
        "precision": str(trainer.precision),
        "devices": trainer.world_size,
        "parameters": parameter_counts,
        "parameter_table": str(Path(config.log_dir) / TABLE_NAME),
        "model_config": model.config.to_dict(),
        **loss_trend(history),
    }
    summary = finite_or_none(summary)  # strict JSON: a NaN loss of some logged step becomes null
    extra_files = {}
    if config.stage == "vqa":
        extra_files[ANSWER_VOCAB_FILE] = answer_vocab(config)[1]
    if config.stage == "stage1":
        model.set_tasks(())  # the MIM mask token and head belong to stage 1 only
    logger.info(
        "%s: %d steps in %.0f s on %d %s device(s) (%s), loss %s -> %s",
        config.name,
        summary["global_step"],
        summary["seconds"],
        trainer.world_size,
        _device_kind(trainer),
        summary["precision"],
        _loss_text(summary["first_loss"]),
        _loss_text(summary["last_loss"]),
    )
    return TrainOutcome(config, model.eval(), vocab_file, summary, extra_files, trainer.is_global_zero)


def _device_kind(trainer: L.Trainer) -> str:
    root = getattr(trainer.strategy, "root_device", None)
    return root.type if root is not None else type(trainer.accelerator).__name__.replace("Accelerator", "").lower()


def _loss_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
