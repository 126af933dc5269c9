"""``trainer.strategy: fsdp`` (issue #13): FSDP2 on two CPU ranks (gloo, real torchrun processes) trains a tiny
stage-3 run and exports a model directory equal in keys, shapes and dtypes to the DDP run's (and, in fp32, equal in
values up to float rounding); a killed FSDP run resumes bit-identically, and a DDP ``last.ckpt`` resumes under FSDP.

Stage 3 is the hardest case for sharding: several model methods per step (not ``forward``), the VL-FFN re-runs of
the top blocks, ITC temperatures that are 0-d parameters (outside FSDP, averaged by hand) and global gathers."""

from __future__ import annotations

import math
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

from vlmo_pipeline.models import VLMo
from vlmo_pipeline.schema import ConfigError
from vlmo_pipeline.training.config import RunConfig, run_config_from_dict
from vlmo_pipeline.training.launch import launch_torchrun
from vlmo_pipeline.training.strategies import build_strategy

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend (two CPU ranks)",
)


def _run(tiny_world: Path, workdir: Path, strategy: str, steps: int) -> RunConfig:
    return tiny_run(
        "stage3",
        tiny_world,
        workdir,
        steps=steps,
        vocab_file=str(tiny_world.parent / "vocab" / "vocab.txt"),
        trainer={
            "max_steps": steps,
            "log_every_n_steps": 1,
            "progress_bar": False,
            "checkpoint_every_n_steps": 1,
            "accelerator": "cpu",
            "devices": 2,
            "strategy": strategy,
        },
    )


def test_strategy_is_a_typed_parameter():
    base = {"stage": "stage1", "trainer": {}}
    assert run_config_from_dict(base).trainer.strategy == "ddp"
    assert run_config_from_dict({**base, "trainer": {"strategy": "fsdp", "devices": 2}}).trainer.strategy == "fsdp"
    with pytest.raises(ConfigError, match="'fsdp' shards the model across ranks: it needs devices x num_nodes >= 2"):
        run_config_from_dict({**base, "trainer": {"strategy": "fsdp"}})  # one device: nothing to shard across
    expected = r"p\.yml: s1: trainer\.strategy must be one of \['ddp', 'fsdp'\]; got 'zero3'"
    with pytest.raises(ConfigError, match=expected):
        run_config_from_dict({**base, "trainer": {"strategy": "zero3"}}, where="p.yml", path="s1")


def test_fsdp_refuses_fp16_and_ddp_stays_the_default(tmp_path: Path):
    config = run_config_from_dict({"stage": "stage1", "trainer": {"devices": 2, "strategy": "fsdp"}})
    with pytest.raises(ValueError, match="'fsdp' supports trainer.precision .* got '16-mixed'"):
        build_strategy(config, "16-mixed")
    assert type(build_strategy(config, "bf16-mixed")).__name__ == "VLMoFSDPStrategy"
    config.trainer.strategy = "ddp"
    assert build_strategy(config, "32-true") == "ddp_find_unused_parameters_true"


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_fsdp_on_two_cpu_ranks_exports_the_ddp_model(tiny_world: Path, tmp_path: Path):
    """Both through the Kedro node's torchrun launch (2 ranks, gloo), 3 steps each."""
    exported = {}
    for strategy in ("ddp", "fsdp"):
        config = _run(tiny_world, tmp_path / strategy, strategy, steps=3)
        model_dir, summary = launch_torchrun(config)
        assert summary["global_step"] == 3 and summary["devices"] == 2
        assert summary["run_config"]["trainer"]["strategy"] == strategy
        assert math.isfinite(summary["first_loss"]) and math.isfinite(summary["last_loss"])
        assert (model_dir / "lightning" / "last.ckpt").is_file(), "one full-state checkpoint file, not shards"
        exported[strategy] = model_dir

    ddp, fsdp = _weights(exported["ddp"]), _weights(exported["fsdp"])
    assert sorted(fsdp) == sorted(ddp)
    assert {key: (tuple(value.shape), value.dtype) for key, value in fsdp.items()} == {
        key: (tuple(value.shape), value.dtype) for key, value in ddp.items()
    }
    for key in ddp:  # same data, seed and fp32 maths: equal up to the order of float reductions
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=1e-4, atol=1e-5, msg=key)
    assert (exported["fsdp"] / "config.json").read_text() == (exported["ddp"] / "config.json").read_text()
    assert (exported["fsdp"] / "vocab.txt").is_file()
    model = VLMo.from_pretrained(exported["fsdp"])
    assert model.load_report is not None and not model.training


# ------------------------------------------------------------------------------------------------ resume
def _command(config: RunConfig, workdir: Path) -> list[str]:
    params = workdir / "params.yml"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return [*torchrun, "-m", "vlmo_pipeline.train", config.name, "--params", str(params)]


def _train(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def _kill_after_checkpoints(command: list[str], last: Path, checkpoints: int) -> int:
    """Start torchrun; SIGKILL its whole process group once ``checkpoints`` new ``last.ckpt`` were put in place;
    return the step of the checkpoint left behind."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seen, count = None, 0
    try:
        while process.poll() is None:
            if last.exists() and last.stat().st_mtime_ns != seen:
                seen, count = last.stat().st_mtime_ns, count + 1
                if count >= checkpoints:
                    os.killpg(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.002)
    finally:
        process.wait(timeout=60)
    assert count >= checkpoints, "the run ended before it was killed"
    return int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])


_STRAIGHT: dict[str, dict[str, torch.Tensor]] = {}


def _straight_fsdp(tiny_world: Path, tmp_path_factory) -> dict[str, torch.Tensor]:
    if "fsdp" not in _STRAIGHT:
        workdir = tmp_path_factory.mktemp("fsdp_straight")
        config = _run(tiny_world, workdir, "fsdp", steps=6)
        _train(_command(config, workdir))
        _STRAIGHT["fsdp"] = _weights(Path(config.output_dir))
    return _STRAIGHT["fsdp"]


@pytest.mark.slow
def test_killed_fsdp_run_resumes_bit_identical(tiny_world: Path, tmp_path: Path, tmp_path_factory):
    straight = _straight_fsdp(tiny_world, tmp_path_factory)
    config = _run(tiny_world, tmp_path, "fsdp", steps=6)
    command = _command(config, tmp_path)
    step = _kill_after_checkpoints(command, config.checkpoint_dir / "last.ckpt", checkpoints=3)
    assert 0 < step < 6
    output = _train(command)
    assert f"resuming from {config.checkpoint_dir / 'last.ckpt'}" in output
    resumed = _weights(Path(config.output_dir))
    assert sorted(resumed) == sorted(straight)
    assert all(torch.equal(resumed[key], straight[key]) for key in straight)


@pytest.mark.slow
def test_ddp_checkpoint_resumes_under_fsdp(tiny_world: Path, tmp_path: Path, tmp_path_factory):
    """A run started with DDP and continued with ``trainer.strategy: fsdp`` (e.g. after running out of memory) picks
    up the DDP ``last.ckpt``: weights and AdamW state map to the right parameters (names, not indices)."""
    straight = _straight_fsdp(tiny_world, tmp_path_factory)
    ddp = _run(tiny_world, tmp_path, "ddp", steps=6)
    step = _kill_after_checkpoints(_command(ddp, tmp_path), ddp.checkpoint_dir / "last.ckpt", checkpoints=3)
    assert 0 < step < 6
    fsdp = _run(tiny_world, tmp_path, "fsdp", steps=6)
    output = _train(_command(fsdp, tmp_path))
    assert "resuming from" in output
    resumed = _weights(Path(fsdp.output_dir))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-4, atol=1e-5, msg=key)
