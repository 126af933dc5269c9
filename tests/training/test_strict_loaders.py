"""Issue 12, item 4: a BEiT checkpoint that does not fit the image side is an error, never a silent random init."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from vlmo_pipeline.models import CheckpointMismatchError, VLMo, load_beit_checkpoint
from vlmo_pipeline.models.config import get_config
from vlmo_pipeline.training.runner import train

try:
    from .test_checkpoint_load_messages import _beit_from
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:
    from test_checkpoint_load_messages import _beit_from
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401

VOCAB = 64


def test_beit_of_another_width_is_refused_and_the_model_is_untouched(tmp_path: Path):
    config = get_config("vlmo_tiny", vocab_size=VOCAB)
    path = tmp_path / "beit_wide.pth"
    torch.save({"model": _beit_from(VLMo(get_config("vlmo_tiny", vocab_size=VOCAB, embed_dim=192)))}, path)
    model = VLMo(config)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as error:
        load_beit_checkpoint(model, path)
    message = str(error.value)
    assert str(path) in message and "does not fit the image side" in message
    assert "shape mismatch (transformer." in message and "(192,) vs model (128,)" in message
    assert "image-side tensors usable (need >= 90%)" in message and len(message) < 1200
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_a_vlmo_file_given_as_beit_checkpoint_is_refused(tmp_path: Path):
    config = get_config("vlmo_tiny", vocab_size=VOCAB)
    path = tmp_path / "vlmo.pth"
    torch.save(VLMo(config).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"0 of the model's \d+ image-side tensors usable") as error:
        load_beit_checkpoint(config, path)
    assert " unexpected (transformer." in str(error.value)


def test_a_fitting_beit_checkpoint_loads_with_one_info_line(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    config = get_config("vlmo_tiny", vocab_size=VOCAB)
    model = load_beit_checkpoint(config, _beit_from(VLMo(config)))
    records = [record for record in caplog.records if record.name == "vlmo_pipeline.models.checkpoint"]
    assert [record.levelno for record in records] == [logging.INFO]
    assert model.load_report.problems() == {}


def test_stage1_with_a_wrong_beit_checkpoint_fails_before_training(tiny_world: Path, tmp_path: Path):
    path = tmp_path / "beit_wide.pth"
    torch.save({"model": _beit_from(VLMo(get_config("vlmo_tiny", vocab_size=VOCAB, embed_dim=192)))}, path)
    config = tiny_run("stage1", tiny_world, tmp_path, init_from=str(path))
    with pytest.raises(CheckpointMismatchError, match="does not fit the image side"):
        train(config)
    assert not (tmp_path / "models" / "stage1").exists()
