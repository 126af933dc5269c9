"""Issue 12, item 1: a diverging stage fails loudly and never exports or loads non-finite weights.

The stage runs are real ``python -m vlmo_pipeline.train`` subprocesses on the tiny world."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from vlmo_pipeline.files import atomic_write_json
from vlmo_pipeline.models import create_model, export_official_state_dict, load_official_checkpoint
from vlmo_pipeline.models.vlmo import WEIGHTS_NAME, NonFiniteWeightsError, VLMo
from vlmo_pipeline.training.guards import finite_or_none

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401


def _train(tiny_world: Path, workdir: Path, **overrides) -> subprocess.CompletedProcess:
    config = tiny_run("stage1", tiny_world, workdir, **overrides)
    params = workdir / f"params-{len(list(workdir.glob('params-*')))}.yml"
    params.write_text(yaml.safe_dump(config.to_dict()))
    return subprocess.run(
        [sys.executable, "-m", "vlmo_pipeline.train", "stage1", "--params", str(params)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _checkpoint_is_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


@pytest.mark.slow
def test_a_diverging_stage_fails_and_keeps_the_last_good_model(tiny_world: Path, tmp_path: Path):
    good = _train(tiny_world, tmp_path, steps=2)
    assert good.returncode == 0, good.stderr[-3000:]
    model_dir = tmp_path / "models" / "stage1"
    weights_before = (model_dir / WEIGHTS_NAME).read_bytes()
    summary_before = (model_dir / "training_summary.json").read_text()

    diverged = _train(tiny_world, tmp_path, steps=12, fresh_start=True, optim={"lr": 1e6, "warmup": 1})
    output = diverged.stdout + diverged.stderr
    assert diverged.returncode != 0, output[-3000:]
    assert "TrainingDivergedError" in output and "stage1: non-finite" in output, output[-3000:]
    assert " at step " in output
    # The catalog's model directory is the previous good one; the checkpoint left is from a finite step.
    assert (model_dir / WEIGHTS_NAME).read_bytes() == weights_before
    assert (model_dir / "training_summary.json").read_text() == summary_before
    last = model_dir / "lightning" / "last.ckpt"
    assert last.is_file() and _checkpoint_is_finite(last)
    assert VLMo.from_pretrained(model_dir) is not None


def _nan_model() -> VLMo:
    model = create_model("vlmo_tiny", vocab_size=64)
    with torch.no_grad():
        model.transformer.blocks[0].attn.qkv.weight[0, 0] = float("nan")
        model.transformer.norm.weight[0] = float("inf")
    return model


def test_save_pretrained_refuses_non_finite_weights(tmp_path: Path):
    with pytest.raises(NonFiniteWeightsError, match=r"refusing to save .* 2 of \d+ tensors hold NaN/inf") as error:
        _nan_model().save_pretrained(tmp_path / "model")
    assert "transformer.blocks.0.attn.qkv.weight" in str(error.value)
    assert not (tmp_path / "model").exists()


def test_loaders_refuse_non_finite_weights_unless_allowed(tmp_path: Path, caplog):
    model = create_model("vlmo_tiny", vocab_size=64)
    model.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / WEIGHTS_NAME
    tensors = load_file(str(weights))
    tensors["transformer.norm.weight"][0] = float("nan")
    save_file(tensors, str(weights))
    with pytest.raises(NonFiniteWeightsError, match="transformer.norm.weight"):
        VLMo.from_pretrained(tmp_path / "model")
    with caplog.at_level(logging.WARNING):
        loaded = VLMo.from_pretrained(tmp_path / "model", allow_non_finite=True)
    assert torch.isnan(loaded.transformer.norm.weight[0])
    assert "hold NaN/inf" in caplog.text and "allow_non_finite=True" in caplog.text

    official = export_official_state_dict(_nan_model())
    with pytest.raises(NonFiniteWeightsError, match="transformer.blocks.0.attn.qkv.weight"):
        load_official_checkpoint(official)
    assert load_official_checkpoint(official, allow_non_finite=True) is not None


def test_summaries_are_strict_json(tmp_path: Path):
    summary = finite_or_none({"first_loss": float("nan"), "last": [1.0, float("inf")], "n": 3})
    assert summary == {"first_loss": None, "last": [1.0, None], "n": 3}
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "s.json", {"loss": float("nan")}, allow_nan=False)
    assert not (tmp_path / "s.json").exists()
    atomic_write_json(tmp_path / "s.json", summary, allow_nan=False)
    assert json.loads((tmp_path / "s.json").read_text(), parse_constant=lambda name: pytest.fail(name)) == summary
