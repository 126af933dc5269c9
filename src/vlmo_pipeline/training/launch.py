"""Run a training stage from a parameters mapping, in-process (one device) or through ``torchrun`` (several).

Lightning's own multi-process launcher re-executes the launching command once per rank, which would re-run the
Kedro pipeline in every rank (kedro-org/kedro#2049). So a Kedro node trains in-process only for a single device;
for several devices it writes the resolved configuration to a YAML file and starts
``torchrun --standalone --nproc_per_node=N -m vlmo_pipeline.train <stage> --params <file> --export-dir <dir>``
— the same entry point used by hand or under SLURM — and hands the exported directory to the catalog.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from vlmo_pipeline.files import lock_target, remove_stale_siblings, staging_dir, swap_directory
from vlmo_pipeline.training.config import RunConfig, run_config_from_dict
from vlmo_pipeline.training.export import SUMMARY_FILE, TrainOutcome, save_outcome
from vlmo_pipeline.training.multinode import write_launch_files
from vlmo_pipeline.training.runner import train

__all__ = ["configure_run", "train_for_catalog", "launch_torchrun", "export_outcome"]


def configure_run(
    params: Mapping[str, Any],
    where: str,
    path: str = "",
    init: str | os.PathLike | None = None,
    vocab_file: str | os.PathLike | None = None,
    dataset_dirs: Mapping[str, str | os.PathLike] | None = None,
    work_dirs: Mapping[str, str | os.PathLike] | None = None,
) -> RunConfig:
    """Parameters → :class:`RunConfig`, with what the catalog provides (the starting model, vocabulary, dataset
    folders and the run's ``model_dir`` / ``log_dir``) taking precedence over the parameter file's values.
    ``where`` (the parameters file) and ``path`` (the section inside it) name the source in errors."""
    overrides: dict[str, Any] = {}
    if init is not None:
        overrides["init"] = os.fspath(init)
    if vocab_file is not None:
        overrides["vocab_file"] = os.fspath(vocab_file)
    if work_dirs is not None:
        overrides["output_dir"] = os.fspath(work_dirs["model_dir"])
        overrides["log_dir"] = os.fspath(work_dirs["log_dir"])
    config = run_config_from_dict(params, where=where, path=path, **overrides)
    for name, directory in (dataset_dirs or {}).items():
        config.data.dataset_dirs[name] = os.fspath(directory)
    return config


def train_for_catalog(config: RunConfig) -> tuple[Callable[[Path], Any] | Path, dict[str, Any]]:
    """Train ``config``; return ``(writer or exported directory, training summary)`` for a ``DirectoryDataset``."""
    world = config.trainer.devices * config.trainer.num_nodes
    if world > 1:
        return launch_torchrun(config)
    outcome = train(config)
    return partial(save_outcome, outcome), outcome.summary


def launch_torchrun(config: RunConfig) -> tuple[Path, dict[str, Any]]:
    """Train on ``config.trainer.devices`` local devices with torchrun; return the exported directory + summary."""
    if config.trainer.num_nodes > 1:
        raise write_launch_files(config)  # the launch folder, and the commands to run on every node
    output = Path(config.output_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    export_dir = output.with_name(f".{output.name}.export-{os.getpid()}")
    shutil.rmtree(export_dir, ignore_errors=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix=f"{config.name}-", delete=False) as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
        params_file = handle.name
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={config.trainer.devices}",
        "-m",
        "vlmo_pipeline.train",
        config.name,
        "--params",
        params_file,
        "--export-dir",
        str(export_dir),
    ]
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"{config.name}: torchrun training failed (exit {error.returncode}): {' '.join(command)}"
        ) from error
    finally:
        Path(params_file).unlink(missing_ok=True)
    summary = json.loads((export_dir / SUMMARY_FILE).read_text())
    return export_dir, summary


def export_outcome(outcome: TrainOutcome, target: str | os.PathLike) -> Path:
    """Write ``outcome`` to ``target`` atomically: into a sibling staging folder, then swapped into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with lock_target(target):  # another process exporting to the same folder fails fast
        remove_stale_siblings(target)  # staging / retired folders of killed runs
        staging = staging_dir(target)
        shutil.rmtree(staging, ignore_errors=True)
        try:
            save_outcome(outcome, staging)
            swap_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
