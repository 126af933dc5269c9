"""`data.verify` reaches the training datasets: with `sha256`, a shard edited in place (same size) stops the run at
open, naming the shard; with the default `size` check the same run opens it (the cheap check cannot see it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.training.tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
from vlmo_pipeline.data.arrow_io import ShardError
from vlmo_pipeline.training.config import run_config_from_dict
from vlmo_pipeline.training.datamodules import VLMoDataModule


def _tampered_copy(primary: Path, root: Path) -> Path:
    """A copy of the tiny world's Arrow root whose first coco train shard has one caption letter changed in place."""
    copy = root / "primary"
    shutil.copytree(primary, copy)
    shard = sorted((copy / "coco").glob("train-*.arrow"))[0]
    data = shard.read_bytes()
    at = data.index(b" and ")  # inside a caption: same size, still a valid Arrow file
    shard.write_bytes(data[:at] + b" And " + data[at + 5 :])
    return copy


def _datamodule(config) -> VLMoDataModule:
    return VLMoDataModule(config, tokenizer=None, image_size=64, patch_size=16)


def test_sha256_verification_refuses_an_edited_shard(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    primary = _tampered_copy(tiny_world, tmp_path)
    base = tiny_run("stage1", tiny_world, tmp_path).to_dict()
    strict = run_config_from_dict({**base, "data": {**base["data"], "root": str(primary), "verify": "sha256"}})
    with pytest.raises(ShardError, match=r"train-\d+\.arrow.*sha256"):
        _datamodule(strict).build_train_dataset()
    cheap = run_config_from_dict({**base, "data": {**base["data"], "root": str(primary)}})
    assert len(_datamodule(cheap).build_train_dataset()) > 0


def test_bad_verify_value_names_the_key(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    base = tiny_run("stage1", tiny_world, tmp_path).to_dict()
    with pytest.raises(ValueError, match="data.verify"):
        run_config_from_dict({**base, "data": {**base["data"], "verify": "md5"}})
