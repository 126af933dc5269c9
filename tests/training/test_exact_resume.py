"""Issue 12, item 2: a stage killed (SIGKILL) right after a checkpoint and re-run ends bit-identical to a run that
was never interrupted: same sampler position, same masking RNG, same global RNGs (CPU, one process).

Every run is a real ``python -m vlmo_pipeline.train`` subprocess; the kill is ``os.kill(pid, SIGKILL)`` as soon as
(a new) ``last.ckpt`` appears."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vlmo_pipeline.models.vlmo import WEIGHTS_NAME

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401

STEPS = 24  # tiny world: 2 (stage 1) / 3 (stage 3) batches per epoch, so kills land mid-epoch and at epoch ends


def _command(tiny_world: Path, workdir: Path, stage: str, augment: bool) -> list[str]:
    extra = {} if stage == "stage1" else {"vocab_file": str(tiny_world.parent / "vocab" / "vocab.txt")}
    config = tiny_run(stage, tiny_world, workdir, steps=STEPS, **extra)
    config.data.augment = augment  # on: random crops + RandAugment (paper); off: the demo's setting
    params = workdir / "params.yml"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(yaml.safe_dump(config.to_dict()))
    return [sys.executable, "-m", "vlmo_pipeline.train", stage, "--params", str(params)]


def _run_to_end(command: list[str], workdir: Path) -> str:
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _kill_after_checkpoints(command: list[str], workdir: Path, last: Path, new_checkpoints: int) -> int:
    """Start the run, SIGKILL it as soon as it has put the ``new_checkpoints``-th new ``last.ckpt`` in place (as
    seen by polling); return the step of the checkpoint it was killed after."""
    seen = last.stat().st_mtime_ns if last.exists() else None
    count = 0
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None:
            if last.exists() and last.stat().st_mtime_ns != seen:
                seen, count = last.stat().st_mtime_ns, count + 1
                if count >= new_checkpoints:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.002)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run ended ({process.returncode}) before it could be killed"
    return int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "augment"), [("stage1", False), ("stage3", True)])
def test_killed_and_rerun_stage_is_bit_identical(tiny_world: Path, tmp_path: Path, stage: str, augment: bool):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    _run_to_end(_command(tiny_world, reference_dir, stage, augment), reference_dir)

    command = _command(tiny_world, killed_dir, stage, augment)
    last = killed_dir / "models" / stage / "lightning" / "last.ckpt"
    # First kill right after the first checkpoint, the second several checkpoints into the resumed run.
    killed_at = [_kill_after_checkpoints(command, killed_dir, last, count) for count in (1, 8)]
    assert 0 < killed_at[0] < killed_at[1] < STEPS, killed_at
    print(f"{stage} (augment {augment}): killed after the checkpoints of steps {killed_at}")
    output = _run_to_end(command, killed_dir)
    assert "not resumable" not in output  # Lightning saves and restores the loader's state
    reference = load_file(str(reference_dir / "models" / stage / WEIGHTS_NAME))
    resumed = load_file(str(killed_dir / "models" / stage / WEIGHTS_NAME))
    assert reference.keys() == resumed.keys()
    different = [key for key in reference if not torch.equal(reference[key], resumed[key])]
    assert not different, f"killed after steps {killed_at}: {len(different)} tensors differ, e.g. {different[:3]}"
