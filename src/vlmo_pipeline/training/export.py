"""What a finished run hands on: its outcome, its training summary, and the model directory written from them.

:func:`save_outcome` writes the result as a ``save_pretrained`` directory plus ``training_summary.json``, the VQA
``answer_vocab.json`` and hard links to the Lightning checkpoints, so that a later re-run still finds
``last.ckpt`` after the directory is swapped into place. :func:`loss_history` reads one logged metric back from
the run's CSV log (the summary's first / last loss, the evaluation report's curves).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmo_pipeline.files import atomic_write_json
from vlmo_pipeline.models import VLMo
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.guards import finite_or_none

__all__ = ["SUMMARY_FILE", "TrainOutcome", "save_outcome", "loss_history", "loss_trend"]

SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainOutcome:
    """What a finished run hands to :func:`save_outcome`."""

    config: RunConfig
    model: VLMo
    vocab_file: Path
    summary: dict[str, Any]
    extra_files: dict[str, Path] = field(default_factory=dict)
    is_global_zero: bool = True


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


def loss_trend(history: list[tuple[int, float]]) -> dict[str, float | None]:
    """Mean loss over the first and the last fifth of the logged steps."""
    if not history:
        return {"first_loss": None, "last_loss": None}
    window = max(1, math.ceil(len(history) / 5))
    first = [value for _, value in history[:window]]
    last = [value for _, value in history[-window:]]
    return {"first_loss": sum(first) / len(first), "last_loss": sum(last) / len(last)}


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
