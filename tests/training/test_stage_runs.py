"""Stage runs on a tiny world: stage-2 freezing, stage hand-off, resume from last.ckpt, run configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vlmo_pipeline.models import VLMo
from vlmo_pipeline.training.config import run_config_from_dict
from vlmo_pipeline.training.freezing import STAGE2_TRAINABLE
from vlmo_pipeline.training.launch import export_outcome
from vlmo_pipeline.training.runner import StaleCheckpointError, loss_history, prepare_model, train

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:  # rootdir-style import when tests/training is not a package
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def stage1_dir(tiny_world: Path, tmp_path_factory) -> Path:
    """A stage-1 model (two MIM steps) exported like the pipeline does."""
    work = tmp_path_factory.mktemp("stage1")
    outcome = train(tiny_run("stage1", tiny_world, work))
    return export_outcome(outcome, work / "models" / "stage1")


@pytest.fixture(scope="module")
def stage2_dir(tiny_world: Path, stage1_dir: Path, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("stage2")
    outcome = train(tiny_run("stage2", tiny_world, work, init=stage1_dir, steps=3))
    return export_outcome(outcome, work / "models" / "stage2")


def _state(directory: Path) -> dict[str, torch.Tensor]:
    return VLMo.from_pretrained(directory).state_dict()


def test_stage1_trains_image_side_only_and_drops_mim_parts(stage1_dir: Path):
    summary = json.loads((stage1_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 2
    model = VLMo.from_pretrained(stage1_dir)
    assert model.transformer.mask_token is None, "the MIM mask token belongs to stage 1 only"
    parameters = summary["parameters"]
    assert parameters["frozen_tensors"] > 0 and parameters["trainable_tensors"] > 0
    assert (stage1_dir / "vocab.txt").is_file() and (stage1_dir / "lightning" / "last.ckpt").is_file()


def test_stage2_leaves_frozen_weights_bit_identical(stage1_dir: Path, stage2_dir: Path):
    before, after = _state(stage1_dir), _state(stage2_dir)
    frozen = [key for key in after if key in before and not any(s in key for s in STAGE2_TRAINABLE)]
    trainable = [key for key in after if key in before and any(s in key for s in STAGE2_TRAINABLE)]
    # The frozen set is what the spec names: shared attention, norm1, layer scale, V-FFN, patch embedding, CLS.
    assert any(".attn.qkv.weight" in key for key in frozen)
    assert any("mlp_imag" in key for key in frozen)
    assert "transformer.patch_embed.proj.weight" in frozen
    for key in frozen:
        assert torch.equal(before[key], after[key]), f"frozen parameter {key} changed in stage 2"
    changed = [key for key in trainable if not torch.equal(before[key], after[key])]
    assert any("mlp_text" in key for key in changed), "stage 2 did not train the L-FFN"
    assert any("text_embeddings" in key for key in changed)
    # Image rows of the rel-pos table get no gradient and no weight decay (no-decay group): unchanged.
    table_before = before["relative_position_bias_table"]
    table_after = after["relative_position_bias_table"]
    image_rows = VLMo.from_pretrained(stage2_dir).layout.num_image_distances
    assert torch.equal(table_before[:image_rows], table_after[:image_rows])
    assert not torch.equal(table_before[image_rows:], table_after[image_rows:]), "text rows did not train"


def test_stage3_starts_from_stage2_weights_exactly(tiny_world: Path, stage2_dir: Path, tmp_path: Path):
    config = tiny_run("stage3", tiny_world, tmp_path, init=stage2_dir)
    stage2 = _state(stage2_dir)
    model = prepare_model(config, vocab_size=stage2["text_embeddings.word_embeddings.weight"].shape[0])
    stage3 = model.state_dict()
    for key, value in stage2.items():
        assert key in stage3, f"{key} of the stage-2 model is missing in stage 3"
        assert torch.equal(value, stage3[key]), f"{key} differs from the stage-2 checkpoint"
    new_keys = set(stage3) - set(stage2)
    assert any("mlp_vl" in key for key in new_keys), "stage 3 must add the VL-FFN experts"
    assert "itm_score.fc.weight" in new_keys and "logit_vl_scale" in new_keys


def test_stage3_vlffn_copy_option(tiny_world: Path, stage2_dir: Path, tmp_path: Path):
    config = tiny_run("stage3", tiny_world, tmp_path, init=stage2_dir, vlffn_init="text")
    model = prepare_model(config, vocab_size=_state(stage2_dir)["text_embeddings.word_embeddings.weight"].shape[0])
    block = next(block for block in model.transformer.blocks if block.mlp_vl is not None)
    assert torch.equal(block.mlp_vl.fc1.weight, block.mlp_text.fc1.weight)


def test_stage3_trains_with_random_itm_negatives(tiny_world: Path, stage2_dir: Path, tmp_path: Path):
    outcome = train(tiny_run("stage3", tiny_world, tmp_path, init=stage2_dir, itm_negatives="random"))
    history = loss_history(tmp_path / "reports" / "stage3", key="train/itm_loss_step")
    assert len(history) == 2 and all(0 < loss < 5 for _, loss in history)
    assert outcome.summary["global_step"] == 2
    with pytest.raises(ValueError, match="itm_negatives must be 'hard' or 'random'"):
        tiny_run("stage3", tiny_world, tmp_path, init=stage2_dir, itm_negatives="easy")


def test_resume_from_last_checkpoint_of_the_same_run(tiny_world: Path, stage1_dir: Path, tmp_path: Path):
    first = train(tiny_run("stage2", tiny_world, tmp_path, init=stage1_dir, steps=2))
    assert first.summary["resumed_from"] is None and first.summary["global_step"] == 2
    last = Path(first.config.checkpoint_dir) / "last.ckpt"
    assert last.is_file()

    again = train(tiny_run("stage2", tiny_world, tmp_path, init=stage1_dir, steps=2))
    assert again.summary["resumed_from"] == str(last)
    assert again.summary["global_step"] == 2
    steps = [step for step, _ in loss_history(again.config.log_dir)]
    assert steps == sorted(steps) and len(steps) == 2, f"log after resume should hold steps 0..1, got {steps}"

    # More steps change the schedule: that is another run, refused (tests/training/test_stale_resume.py).
    with pytest.raises(StaleCheckpointError, match="trainer.max_steps"):
        train(tiny_run("stage2", tiny_world, tmp_path, init=stage1_dir, steps=4))
    fresh = train(tiny_run("stage2", tiny_world, tmp_path, init=stage1_dir, steps=4, fresh_start=True))
    assert fresh.summary["resumed_from"] is None and fresh.summary["global_step"] == 4


def test_resume_is_refused_when_the_starting_weights_changed(
    tiny_world: Path, stage1_dir: Path, stage2_dir: Path, tmp_path: Path
):
    train(tiny_run("stage3", tiny_world, tmp_path, init=stage2_dir, steps=1))
    with pytest.raises(StaleCheckpointError, match=r"changed since it was written: init\b"):
        train(tiny_run("stage3", tiny_world, tmp_path, init=stage1_dir, steps=1))
    other_start = train(tiny_run("stage3", tiny_world, tmp_path, init=stage1_dir, steps=1, fresh_start=True))
    assert other_start.summary["resumed_from"] is None


def test_finetune_tasks_run_and_export(tiny_world: Path, stage2_dir: Path, tmp_path: Path):
    for stage in ("retrieval", "vqa", "nlvr2"):
        outcome = train(tiny_run(stage, tiny_world, tmp_path, init=stage2_dir, steps=1))
        exported = export_outcome(outcome, tmp_path / "exported" / stage)
        model = VLMo.from_pretrained(exported)
        assert model.config.loss_names == ({"retrieval": "irtr"}.get(stage, stage),)
        if stage == "vqa":
            assert (exported / "answer_vocab.json").is_file()
            assert model.config.vqa_num_labels == len(json.loads((exported / "answer_vocab.json").read_text()))
        if stage == "nlvr2":
            assert model.token_type_embeddings.num_embeddings == 3


def test_run_config_rejects_unknown_keys_and_stages():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_step'\]"):
        run_config_from_dict({"stage": "stage1", "trainer": {"max_step": 3}})
    with pytest.raises(ValueError, match="unknown stage"):
        run_config_from_dict({"stage": "stage4"})
    config = run_config_from_dict({"stage": "stage2"})
    assert config.trainable == list(STAGE2_TRAINABLE)


def test_missing_previous_stage_is_a_clear_error(tiny_world: Path, tmp_path: Path):
    config = tiny_run("stage3", tiny_world, tmp_path, init=tmp_path / "nowhere", vocab_file=str(tmp_path / "v.txt"))
    with pytest.raises(FileNotFoundError, match="vocab"):
        train(config)


def test_itc_temperature_init_sets_the_temperatures_this_run_creates(tmp_path):
    import math

    fresh = prepare_model(
        run_config_from_dict({"stage": "retrieval", "init": "vlmo_tiny", "itc_temperature_init": 0.5}), vocab_size=300
    )
    assert float(fresh.logit_scale) == pytest.approx(math.log(2.0))
    fresh.logit_scale.data.fill_(1.25)
    fresh.save_pretrained(tmp_path / "ckpt")
    loaded = prepare_model(
        run_config_from_dict({"stage": "retrieval", "init": str(tmp_path / "ckpt"), "itc_temperature_init": 0.5}),
        vocab_size=300,
    )
    assert float(loaded.logit_scale) == pytest.approx(1.25)  # a loaded temperature is never touched
