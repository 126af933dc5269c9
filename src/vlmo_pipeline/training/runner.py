"""Run one training stage / fine-tuning task end to end: model, data, Lightning Trainer, resume, export.

``train(config)`` is the single code path behind the Kedro nodes (one device, in-process) and
``python -m vlmo_pipeline.train`` (any number of devices, e.g. under ``torchrun``):

1. seed everything; load the tokenizer (``config.vocab_file`` or the ``vocab.txt`` of the ``init`` directory);
2. build the model: from a registry name (stage 1; optionally initialised from a BEiT checkpoint) or from the
   previous stage's ``save_pretrained`` directory, then switch its heads to this stage's tasks (``set_tasks``);
3. freeze everything outside ``config.trainable`` (stage 1/2 rules by default);
4. fit with a CSV logger in ``config.log_dir``, a step progress callback (``trainer.progress_bar``; see
   :mod:`vlmo_pipeline.progress`) and a ``ModelCheckpoint`` writing ``last.ckpt`` to
   ``<output_dir>/lightning``. An existing ``last.ckpt`` is resumed when it belongs to the same run (everything
   that changes the result, recorded in ``run_fingerprint.json``: see :func:`run_fingerprint`); one of another run
   stops the stage with :class:`StaleCheckpointError` naming what changed (``trainer.resume``, ``fresh_start``);
5. write ``trainable_parameters.md`` / ``.json`` (:mod:`vlmo_pipeline.training.parameter_table`) into
   ``config.log_dir``, beside Lightning's ``hparams.yaml`` and ``metrics.csv``.

``save_outcome(outcome, directory)`` writes the result as a ``save_pretrained`` directory (plus
``training_summary.json``, the VQA ``answer_vocab.json``, and hard links to the Lightning checkpoints so a later
re-run still finds ``last.ckpt`` after the directory is swapped into place).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from vlmo_pipeline.data.datasets import ANSWER_VOCAB_FILE, load_answer_vocab
from vlmo_pipeline.files import atomic_write_json, atomic_write_via
from vlmo_pipeline.models import VLMo, create_model, list_configs, load_beit_checkpoint
from vlmo_pipeline.models.pretrained import VOCAB_NAME, WEIGHTS_NAME
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.vlmo import describe_non_finite, non_finite_tensors
from vlmo_pipeline.training.callbacks import StepProgress
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.datamodules import VLMoDataModule
from vlmo_pipeline.training.freezing import apply_trainable_substrings, freeze_report, unmatched_substrings
from vlmo_pipeline.training.guards import DivergenceGuard, TrainingDivergedError, finite_or_none
from vlmo_pipeline.training.logs import configure_training_logs
from vlmo_pipeline.training.modules import VLMoTaskModule, build_module
from vlmo_pipeline.training.parameter_table import TABLE_NAME, trainable_parameter_table, write_parameter_table
from vlmo_pipeline.training.runs import get_run
from vlmo_pipeline.training.sampling import ResumeStateCallback
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

SUMMARY_FILE = "training_summary.json"
FINGERPRINT_FILE = "run_fingerprint.json"
LAST_CHECKPOINT = "last.ckpt"

configure_training_logs()


@dataclass
class TrainOutcome:
    """What a finished run hands to :func:`save_outcome`."""

    config: RunConfig
    model: VLMo
    vocab_file: Path
    summary: dict[str, Any]
    extra_files: dict[str, Path] = field(default_factory=dict)
    is_global_zero: bool = True


# ------------------------------------------------------------------------------------------------ model
def resolve_vocab_file(config: RunConfig) -> Path:
    """``config.vocab_file``, else the ``vocab.txt`` saved with the ``init`` model directory."""
    if config.vocab_file:
        path = Path(config.vocab_file)
        if path.is_dir():
            path = path / VOCAB_NAME
    else:
        path = Path(config.init) / VOCAB_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{config.name}: WordPiece vocabulary {path} not found (set vocab_file, or start from a model directory "
            "that contains vocab.txt)"
        )
    return path


def _vqa_answer_vocab(config: RunConfig) -> tuple[list[str], Path]:
    names = list(config.data.datasets)
    if not names:
        raise ValueError(f"{config.name}: data.datasets must name the VQA dataset (e.g. vqav2: [train])")
    directory = config.data.dataset_dir(names[0])
    return load_answer_vocab(directory), directory / ANSWER_VOCAB_FILE


def prepare_model(config: RunConfig, vocab_size: int) -> VLMo:
    """Build the starting model of ``config`` with this stage's heads (see module docstring)."""
    overrides = dict(config.model_overrides)
    if config.init in list_configs():
        model = create_model(config.init, vocab_size=vocab_size, loss_names=config.tasks, **overrides)
        if config.init_from:
            # Raises CheckpointMismatchError when the file does not fit the image side; else logs one line.
            load_beit_checkpoint(model, config.init_from)
    elif Path(config.init).is_dir():
        model = VLMo.from_pretrained(config.init, **overrides)
        if model.config.vocab_size != vocab_size:
            raise ValueError(
                f"{config.name}: model {config.init} has vocab_size {model.config.vocab_size} but the tokenizer has "
                f"{vocab_size} tokens"
            )
    else:
        raise FileNotFoundError(
            f"{config.name}: init {config.init!r} is neither a registered config ({', '.join(list_configs())}) nor "
            "a model directory (did the previous stage run?)"
        )
    had_vlffn = any(block.mlp_vl is not None for block in model.transformer.blocks)
    # Temperatures "created by this run": all of them for a model built from a config name, else the new ones.
    from_checkpoint = config.init not in list_configs()
    had_scales = {
        name for name in ("logit_scale", "logit_vl_scale") if from_checkpoint and getattr(model, name, None) is not None
    }
    vqa_labels = len(_vqa_answer_vocab(config)[0]) if config.stage == "vqa" else None
    model.set_tasks(config.tasks, vqa_num_labels=vqa_labels)
    if config.itc_temperature_init is not None:
        for name in ("logit_scale", "logit_vl_scale"):
            scale = getattr(model, name, None)
            if scale is not None and name not in had_scales:
                with torch.no_grad():
                    scale.fill_(math.log(1.0 / config.itc_temperature_init))
    if config.stage == "stage3" and not had_vlffn and config.vlffn_init != "random":
        _copy_ffn_into_vlffn(model, "mlp_text" if config.vlffn_init == "text" else "mlp_imag")
    return model.train()


@torch.no_grad()
def _copy_ffn_into_vlffn(model: VLMo, source: str) -> None:
    """Initialise every VL-FFN (and its norm) from the same block's L-FFN or V-FFN (option, not official)."""
    norm_source = source.replace("mlp", "norm2")
    for block in model.transformer.blocks:
        if block.mlp_vl is not None:
            block.mlp_vl.load_state_dict(getattr(block, source).state_dict())
            block.norm2_vl.load_state_dict(getattr(block, norm_source).state_dict())


#: Substrings of the default freezing rules naming parameters only some models have (absolute image positions).
_OPTIONAL_SUBSTRINGS = ("transformer.pos_embed",)


def _apply_freezing(module: VLMoTaskModule, config: RunConfig) -> dict[str, int]:
    if config.trainable is None:
        return freeze_report(module)
    missing = [
        substring
        for substring in unmatched_substrings(module, config.trainable)
        if substring not in _OPTIONAL_SUBSTRINGS
    ]
    if missing:
        logger.warning(
            "%s: trainable substrings %s match no parameter of this model (a typo or a renamed "
            "module leaves that part frozen)",
            config.name,
            missing,
        )
    trainable = apply_trainable_substrings(module, config.trainable)
    if not trainable:
        raise ValueError(f"{config.name}: trainable={config.trainable} leaves no parameter to train")
    return freeze_report(module)


# ---------------------------------------------------------------------------------------------- trainer
def _precision(config: RunConfig) -> str | int:
    if config.trainer.precision != "auto":
        return config.trainer.precision
    on_gpu = torch.cuda.is_available() and config.trainer.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


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
        strategy=build_strategy(config, _precision(config)),  # trainer.strategy: ddp (or one device) / fsdp
        precision=_precision(config),
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


# ----------------------------------------------------------------------------------------------- resume
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _data_fingerprint(config: RunConfig) -> dict[str, Any]:
    """Per training dataset: its splits and the sha256 of its ``manifest.json`` (else its shard names and sizes)."""
    data: dict[str, Any] = {}
    for name, splits in config.data.datasets.items():
        directory = config.data.dataset_dir(name)
        manifest = directory / "manifest.json"
        entry: dict[str, Any] = {"splits": list(splits)}
        if manifest.is_file():
            entry["manifest_sha256"] = _file_digest(manifest)
        else:
            entry["shards"] = sorted(
                (path.name, path.stat().st_size)
                for split in splits
                for path in directory.glob(f"{split}-*.arrow")
                if path.is_file()
            )
        data[name] = entry
    return data


def run_fingerprint(config: RunConfig, vocab_file: Path) -> dict[str, Any]:
    """Everything that changes what a run computes; ``last.ckpt`` is resumed only when this is unchanged.

    Stage and tasks, seed, starting weights (registry name or the sha256 of ``model.safetensors``; the BEiT file's
    sha256), model overrides, vocabulary, freezing, the stage options (VL-FFN init, ITC temperature, ITM negatives,
    MIM / MLM masking), optimiser and schedule, the trainer settings that change the result (max_steps / epochs,
    devices, nodes, precision, accelerator, accumulation, clipping, determinism), and the data (datasets, splits,
    the sha256 of each dataset's ``manifest.json``, batch size, text length, augmentation, sample limit, workers).
    Logging, checkpoint cadence and progress display are not part of it.
    """
    init_weights = Path(config.init) / WEIGHTS_NAME
    init_from = Path(config.init_from) if config.init_from else None
    trainer = config.trainer
    data = config.data
    return {
        "stage": config.stage,
        "tasks": list(config.tasks),
        "seed": config.seed,
        "init": config.init if config.init in list_configs() else _file_digest(init_weights),
        "init_from": _file_digest(init_from) if init_from and init_from.is_file() else config.init_from,
        "model_overrides": config.model_overrides,
        "vocab": _file_digest(vocab_file),
        "trainable": config.trainable,
        "vlffn_init": config.vlffn_init,
        "itc_temperature_init": config.itc_temperature_init,
        "itm_negatives": config.itm_negatives,
        "mim": dataclasses.asdict(config.mim),
        "mlm": dataclasses.asdict(config.mlm),
        "optim": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config.optim).items()},
        "trainer": {
            "max_steps": trainer.max_steps,
            "max_epochs": trainer.max_epochs if trainer.max_steps == -1 else None,
            "devices": trainer.devices,
            "num_nodes": trainer.num_nodes,
            "precision": _precision(config),
            "accelerator": trainer.accelerator,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "gradient_clip_val": trainer.gradient_clip_val,
            "deterministic": trainer.deterministic,
        },
        "batch_size": data.batch_size,
        "data": {
            "datasets": _data_fingerprint(config),
            "max_text_len": data.max_text_len,
            "augment": data.augment,
            "randaug": data.randaug,
            "hflip": data.hflip,
            "max_train_samples": data.max_train_samples,
            "num_workers": data.num_workers,
        },
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def fingerprint_differences(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two fingerprints (``["<no fingerprint recorded>"]`` for none)."""
    if recorded is None:
        return ["<no fingerprint recorded>"]
    old, new = _flatten(recorded), _flatten(json.loads(json.dumps(current, default=str)))
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


class StaleCheckpointError(RuntimeError):
    """``last.ckpt`` exists but belongs to another run (or ``trainer.resume: require`` finds none)."""


def _resume_checkpoint(config: RunConfig, fingerprint: dict[str, Any], is_global_zero: bool) -> Path | None:
    """``last.ckpt`` to resume from, or ``None`` (and a cleaned checkpoint folder) for a fresh start.

    See ``trainer.resume`` (:class:`~vlmo_pipeline.training.config.TrainerConfig`); ``fresh_start`` = ``never``.
    """
    checkpoint_dir = config.checkpoint_dir
    recorded_path = checkpoint_dir / FINGERPRINT_FILE
    mode = "never" if config.fresh_start else config.trainer.resume
    # last.ckpt, or the newer checkpoint Lightning saved when SLURM announced a preemption (SIGUSR1, sbatch.sh)
    candidates = [checkpoint_dir / LAST_CHECKPOINT, *checkpoint_dir.glob("hpc_ckpt_*.ckpt")]
    candidates = [path for path in candidates if path.is_file()]
    last = max(candidates, key=lambda path: path.stat().st_mtime_ns, default=checkpoint_dir / LAST_CHECKPOINT)
    if mode != "never" and last.is_file():
        recorded = json.loads(recorded_path.read_text()) if recorded_path.is_file() else None
        differences = fingerprint_differences(recorded, fingerprint)
        if not differences:
            logger.info("%s: resuming from %s", config.name, last)
            return last
        shown = ", ".join(differences[:8]) + (f", ... (+{len(differences) - 8} more)" if len(differences) > 8 else "")
        raise StaleCheckpointError(
            f"{config.name}: {last} belongs to a different run; changed since it was written: {shown}. "
            f"Not resuming it (that would continue the old run) and not deleting it. To discard it and start "
            f"fresh, set trainer.resume: never (or fresh_start: true), e.g. "
            f"--params {_section(config)}.fresh_start=true; to continue it, restore the old settings."
        )
    if mode == "require":
        raise StaleCheckpointError(f"{config.name}: trainer.resume is 'require' but there is no {last} to resume from")
    if is_global_zero:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        shutil.rmtree(config.log_dir, ignore_errors=True)  # the CSV logger appends; a fresh run starts a new log
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(recorded_path, fingerprint, sort_keys=True, default=str, trailing_newline=False, parents=True)
    return None


def _section(config: RunConfig) -> str:
    """The Kedro parameters section of a run (its pipeline name in the registry), for messages; a run
    outside the registry (another name) is named as it is."""
    try:
        return get_run(config.name).pipeline
    except ValueError:
        return config.name


def _set_aside_log(config: RunConfig) -> Path | None:
    """Move ``metrics.csv`` aside before a resumed fit (Lightning's CSV logger deletes it when it starts)."""
    log = Path(config.log_dir) / "metrics.csv"
    if not log.is_file():
        return None
    aside = log.with_name("metrics.before-resume.csv")
    os.replace(log, aside)
    return aside


def _merge_logs(earlier: Path, current: Path) -> None:
    """``metrics.csv`` = rows of the earlier log (steps before the resumed ones) + the new rows, union header."""
    rows: list[dict[str, str]] = []
    header: list[str] = []
    new_rows: list[dict[str, str]] = []
    for path, target in ((earlier, rows), (current, new_rows)):
        if path.is_file():
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                header += [name for name in reader.fieldnames or [] if name not in header]
                target.extend(reader)
    first_new_step = min((int(row["step"]) for row in new_rows), default=None)
    if first_new_step is not None:
        rows = [row for row in rows if int(row["step"]) < first_new_step]

    def write_merged(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows + new_rows)

    atomic_write_via(current, write_merged)
    earlier.unlink()


# ---------------------------------------------------------------------------------------------- history
def loss_history(log_dir: str | os.PathLike, key: str = "train/loss_step") -> list[tuple[int, float]]:
    """``(step, value)`` pairs of one logged metric from ``<log_dir>/metrics.csv`` (empty when absent)."""
    path = Path(log_dir) / "metrics.csv"
    if not path.is_file():
        return []
    history = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            value = row.get(key)
            if value not in (None, ""):
                history.append((int(row["step"]), float(value)))
    return history


def _loss_trend(history: list[tuple[int, float]]) -> dict[str, float | None]:
    """Mean loss over the first and the last fifth of the logged steps."""
    if not history:
        return {"first_loss": None, "last_loss": None}
    window = max(1, math.ceil(len(history) / 5))
    first = [value for _, value in history[:window]]
    last = [value for _, value in history[-window:]]
    return {"first_loss": sum(first) / len(first), "last_loss": sum(last) / len(last)}


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
    parameter_counts = _apply_freezing(module, config)
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
    resume_from = _resume_checkpoint(config, fingerprint, trainer.is_global_zero)
    earlier_log = _set_aside_log(config) if resume_from and trainer.is_global_zero else None
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
        _merge_logs(earlier_log, Path(config.log_dir) / "metrics.csv")
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
        **_loss_trend(history),
    }
    summary = finite_or_none(summary)  # strict JSON: a NaN loss of some logged step becomes null
    extra_files = {}
    if config.stage == "vqa":
        extra_files[ANSWER_VOCAB_FILE] = _vqa_answer_vocab(config)[1]
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


def save_outcome(outcome: TrainOutcome, directory: str | os.PathLike) -> Path:
    """Write the trained model as a ``save_pretrained`` directory with everything the next stage needs.

    Used as the writer of a ``DirectoryDataset`` (``directory`` is its staging folder). The Lightning checkpoint
    folder ``<output_dir>/lightning`` is hard-linked (copied where links are impossible) into ``directory`` so that
    ``last.ckpt`` survives the swap of the new directory into place.
    """
    directory = Path(directory)
    outcome.model.save_pretrained(directory, vocab_file=outcome.vocab_file)
    for name, source in outcome.extra_files.items():
        shutil.copyfile(source, directory / name)
    atomic_write_json(
        directory / SUMMARY_FILE,
        finite_or_none({**outcome.summary, "run_config": outcome.config.to_dict()}),
        sort_keys=True,
        default=str,
        allow_nan=False,
        trailing_newline=False,
        parents=True,
    )
    checkpoints = outcome.config.checkpoint_dir
    if checkpoints.is_dir() and checkpoints.resolve() != (directory / "lightning").resolve():
        shutil.copytree(checkpoints, directory / "lightning", copy_function=_link_or_copy, dirs_exist_ok=True)
    return directory


def _link_or_copy(source: str, destination: str) -> None:
    if os.path.lexists(destination):
        os.unlink(destination)  # re-export into an existing folder: replace, never write through an old link
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
