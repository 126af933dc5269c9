"""Resuming a run: what must match for a checkpoint to be resumed, which checkpoint that is, and the CSV log.

``last.ckpt`` (or, after a SLURM preemption, the newer ``hpc_ckpt_<n>.ckpt``) in ``<output_dir>/lightning`` is
resumed only when it belongs to the same run: everything that changes the result is recorded in
``run_fingerprint.json`` (:func:`run_fingerprint`), and a checkpoint of another run stops the stage with
:class:`StaleCheckpointError` naming what changed (``trainer.resume``, ``fresh_start``). A resumed run's earlier
CSV log is set aside before the fit and merged back after it, so ``metrics.csv`` holds the whole run.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from vlmo_pipeline.files import atomic_write_json, atomic_write_via
from vlmo_pipeline.models import list_configs
from vlmo_pipeline.models.pretrained import WEIGHTS_NAME
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.runs import get_run
from vlmo_pipeline.training.setup import resolved_precision

__all__ = [
    "FINGERPRINT_FILE",
    "LAST_CHECKPOINT",
    "StaleCheckpointError",
    "run_fingerprint",
    "fingerprint_differences",
    "resume_checkpoint",
    "set_aside_log",
    "merge_logs",
]

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "run_fingerprint.json"
LAST_CHECKPOINT = "last.ckpt"


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
            "precision": resolved_precision(config),
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


def resume_checkpoint(config: RunConfig, fingerprint: dict[str, Any], is_global_zero: bool) -> Path | None:
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


def set_aside_log(config: RunConfig) -> Path | None:
    """Move ``metrics.csv`` aside before a resumed fit (Lightning's CSV logger deletes it when it starts)."""
    log = Path(config.log_dir) / "metrics.csv"
    if not log.is_file():
        return None
    aside = log.with_name("metrics.before-resume.csv")
    os.replace(log, aside)
    return aside


def merge_logs(earlier: Path, current: Path) -> None:
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
