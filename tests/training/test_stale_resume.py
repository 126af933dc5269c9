"""Issue 12, item 3: a re-run with other settings never silently resumes (or discards) another run's last.ckpt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlmo_pipeline.training.runner import (
    StaleCheckpointError,
    fingerprint_differences,
    resolve_vocab_file,
    run_fingerprint,
    train,
)

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401


def _differences(tiny_world: Path, tmp_path: Path, **changes) -> list[str]:
    base = tiny_run("stage1", tiny_world, tmp_path)
    other = tiny_run("stage1", tiny_world, tmp_path, **changes)
    vocab = resolve_vocab_file(base)
    recorded = json.loads(json.dumps(run_fingerprint(base, vocab), default=str))
    return fingerprint_differences(recorded, run_fingerprint(other, vocab))


def test_the_fingerprint_covers_what_changes_the_result(tiny_world: Path, tmp_path: Path):
    trainer = {"max_steps": 2, "log_every_n_steps": 1, "progress_bar": False, "checkpoint_every_n_steps": 1}
    assert _differences(tiny_world, tmp_path) == []
    assert _differences(tiny_world, tmp_path, steps=5) == ["trainer.max_steps"]
    assert _differences(tiny_world, tmp_path, optim={"lr": 2e-3, "warmup": 1}) == ["optim.lr"]
    assert _differences(tiny_world, tmp_path, trainer={**trainer, "devices": 2}) == ["trainer.devices"]
    assert _differences(tiny_world, tmp_path, trainer={**trainer, "precision": "bf16-mixed"}) == ["trainer.precision"]
    assert _differences(tiny_world, tmp_path, mim={"mask_ratio": 0.3}) == ["mim.mask_ratio"]
    assert _differences(tiny_world, tmp_path, model_overrides={"drop_path_rate": 0.1}) == [
        "model_overrides.drop_path_rate"
    ]
    # Logging, checkpoint cadence and the progress display do not change the result.
    assert _differences(tiny_world, tmp_path, trainer={**trainer, "log_every_n_steps": 7, "progress_bar": True}) == []
    # Other data: a dataset whose manifest changed (re-ingested), another split list.
    copy = tmp_path / "coco_copy"
    shutil.copytree(tiny_world / "coco", copy)
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    data = {"root": str(tiny_world), "datasets": {"coco": ["train"]}, "batch_size": 4, "max_text_len": 32}
    assert _differences(tiny_world, tmp_path, data={**data, "hflip": False, "dataset_dirs": {"coco": str(copy)}}) == [
        "data.datasets.coco.manifest_sha256"
    ]
    two_splits = {**data, "hflip": False, "datasets": {"coco": ["train", "val"]}}
    assert _differences(tiny_world, tmp_path, data=two_splits) == ["data.datasets.coco.splits"]


def test_a_changed_rerun_is_refused_with_the_changed_keys(tiny_world: Path, tmp_path: Path):
    first = train(tiny_run("stage1", tiny_world, tmp_path, steps=2))
    last = first.config.checkpoint_dir / "last.ckpt"
    written = last.read_bytes()
    for changes, key in (({"steps": 1}, "trainer.max_steps"), ({"optim": {"lr": 5e-3, "warmup": 1}}, "optim.lr")):
        with pytest.raises(StaleCheckpointError) as error:
            train(tiny_run("stage1", tiny_world, tmp_path, **changes))
        message = str(error.value)
        assert f"changed since it was written: {key}." in message
        assert "trainer.resume: never" in message and "--params pretrain_stage1.fresh_start=true" in message
        assert last.read_bytes() == written  # neither resumed nor deleted

    same = train(tiny_run("stage1", tiny_world, tmp_path, steps=2, trainer={"max_steps": 2, "resume": "require"}))
    assert same.summary["resumed_from"] == str(last)
    never = {"max_steps": 1, "resume": "never", "progress_bar": False}
    fresh = train(tiny_run("stage1", tiny_world, tmp_path, steps=1, trainer=never))
    assert fresh.summary["resumed_from"] is None and fresh.summary["global_step"] == 1


def test_resume_require_without_a_checkpoint_fails(tiny_world: Path, tmp_path: Path):
    with pytest.raises(StaleCheckpointError, match="'require' but there is no .*last.ckpt"):
        train(tiny_run("stage1", tiny_world, tmp_path, trainer={"max_steps": 1, "resume": "require"}))
    with pytest.raises(ValueError, match="trainer.resume must be one of"):
        tiny_run("stage1", tiny_world, tmp_path, trainer={"resume": "sometimes"})
