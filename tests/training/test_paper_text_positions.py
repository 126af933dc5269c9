"""The paper's text-length chain (spec §4.4, §2 loader rule 1) with conf/paper's own stage sections.

Stage 2 trains text-only MLM at 196 tokens, so its model has 196 text positions; stage 3 loads that model at 40
tokens and keeps the first 40 position rows (the official loader truncates them). The sections come from
`conf/paper` through the project's Kedro config loader and `configure_run`, the path `kedro run --env paper`
takes; only the scale (tiny model, tiny world, a few steps on one CPU) is changed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import REPO
from vlmo_pipeline.models import VLMo, create_model
from vlmo_pipeline.models.checkpoint import CheckpointMismatchError
from vlmo_pipeline.models.relpos import RelPosLayout
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.datamodules import VLMoDataModule
from vlmo_pipeline.training.launch import configure_run, export_outcome
from vlmo_pipeline.training.runner import prepare_model, train

try:
    from .tiny_training_world import tiny_world  # noqa: F401  (fixture)
except ImportError:  # rootdir-style import when tests/training is not a package
    from tiny_training_world import tiny_world  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

POSITIONS = "text_embeddings.position_embeddings.weight"


@pytest.fixture(scope="module")
def paper() -> dict:
    loader = CONFIG_LOADER_CLASS(conf_source=str(REPO / "conf"), env="paper", **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def _tiny_scale(config: RunConfig, primary: Path, work: Path) -> RunConfig:
    """conf/paper's run at test scale: one CPU process, batch 4, two steps, output below ``work``."""
    config.output_dir, config.log_dir = str(work / "model"), str(work / "log")
    config.data.root, config.data.batch_size, config.data.num_workers = str(primary), 4, 0
    config.trainer = dataclasses.replace(
        config.trainer,
        max_steps=2,
        devices=1,
        num_nodes=1,
        accumulate_grad_batches=1,
        checkpoint_every_n_steps=1,
        log_every_n_steps=1,
        accelerator="cpu",
    )
    config.optim = dataclasses.replace(config.optim, warmup=1)
    return config


def _stage1_model(paper: dict, vocab: Path, directory: Path) -> Path:
    """What conf/paper's stage 1 hands on, at tiny size: its model_overrides on vlmo_tiny (whose relative-position
    table gets the official 196-token text budget), saved the way stage 1 saves (MIM parts dropped)."""
    section = dict(paper["pretrain_stage1"], init="vlmo_tiny", init_from=None, vocab_file=str(vocab))
    # tiny images: conf/paper states the official 224 px (the demo's base section sets 48)
    section["model_overrides"] = {**section["model_overrides"], "max_text_len_of_initckpt": 196, "image_size": 64}
    config = configure_run(section, "conf/paper pretrain_stage1 (tiny)")
    model = prepare_model(config, VLMoTokenizer(vocab, lowercase=True).vocab_size)
    model.set_tasks(())
    return model.save_pretrained(directory, vocab_file=vocab)


def test_stage2_at_196_tokens_initialises_stage3_at_40(paper: dict, tiny_world: Path, tmp_path: Path):
    vocab = tiny_world.parent / "vocab" / "vocab.txt"
    stage1_dir = _stage1_model(paper, vocab, tmp_path / "stage1")
    assert VLMo.from_pretrained(stage1_dir).config.max_text_len == 196

    # stage 2: conf/paper's section, trained for two steps on 196-token text
    stage2 = _tiny_scale(
        configure_run(
            paper["pretrain_stage2"],
            "conf/paper pretrain_stage2",
            init=stage1_dir,
            dataset_dirs={"text": tiny_world / "text"},
        ),
        tiny_world,
        tmp_path / "s2",
    )
    assert stage2.data.max_text_len == 196
    tokenizer = VLMoTokenizer(vocab, lowercase=True, max_len=stage2.data.max_text_len)
    batch = next(iter(VLMoDataModule(stage2, tokenizer, image_size=64, patch_size=16).train_dataloader()))
    assert batch["text_ids"].shape == (4, 196) and batch["text_ids_mlm"].shape == (4, 196)
    outcome = train(stage2)
    assert outcome.summary["global_step"] == 2
    stage2_dir = export_outcome(outcome, tmp_path / "stage2")
    saved = VLMo.from_pretrained(stage2_dir)
    assert saved.config.max_text_len == 196 and saved.state_dict()[POSITIONS].shape[0] == 196
    assert all(block.mlp_vl is None for block in saved.transformer.blocks)  # textmlm: no VL-FFN (official)

    # stage 3: conf/paper's section builds its starting model from that directory
    stage3 = configure_run(paper["pretrain_stage3"], "conf/paper pretrain_stage3", init=stage2_dir)
    assert stage3.data.max_text_len == 40
    model = prepare_model(stage3, saved.config.vocab_size)
    assert model.config.max_text_len == 40 and model.config.max_text_len_of_initckpt == 196
    assert torch.equal(model.text_embeddings.position_embeddings.weight, saved.state_dict()[POSITIONS][:40])
    assert torch.equal(model.text_embeddings.position_ids, torch.arange(40)[None])
    assert torch.equal(model.relative_position_bias_table, saved.relative_position_bias_table)
    assert "truncated text position embeddings 196 -> 40" in model.load_report.notes
    for name, tensor in saved.state_dict().items():  # everything else carries over unchanged
        if name not in (POSITIONS, "text_embeddings.position_ids"):
            assert torch.equal(model.state_dict()[name], tensor), name
    assert all(block.mlp_vl is not None for block in model.transformer.blocks[model.config.vlffn_start_layer_index :])

    # the 40-token stage-3 model runs the fused pass on 40-token text
    model.eval()
    ids = torch.full((2, 40), 0, dtype=torch.long)
    ids[:, 0], ids[:, 1:6] = 2, 7
    masks = (ids != 0).long()
    with torch.no_grad():
        fused = model.fuse(ids, masks, torch.zeros(2, 3, 64, 64))
    assert fused.cls_feats.shape == (2, model.config.embed_dim) and torch.isfinite(fused.cls_feats).all()


def test_stage1_passes_its_starting_weights_through(paper: dict, tiny_world: Path, tmp_path: Path):
    """conf/paper's stage 1 (spec §4.4: no image-only training) run for real: its one step at learning rate 0
    leaves every weight exactly as the stage built it (BEiT's in the paper run, a seeded tiny init here)."""
    vocab = tiny_world.parent / "vocab" / "vocab.txt"
    section = dict(paper["pretrain_stage1"], init="vlmo_tiny", init_from=None, vocab_file=str(vocab))
    # tiny images: conf/paper states the official 224 px (the demo's base section sets 48)
    section["model_overrides"] = {**section["model_overrides"], "max_text_len_of_initckpt": 196, "image_size": 64}
    config = configure_run(section, "conf/paper pretrain_stage1 (tiny)", dataset_dirs={"coco": tiny_world / "coco"})
    config.data.datasets = {"coco": ["train"]}
    paper_steps, paper_warmup = config.trainer.max_steps, config.optim.warmup
    config = _tiny_scale(config, tiny_world, tmp_path)
    config.trainer = dataclasses.replace(config.trainer, max_steps=paper_steps)
    config.optim = dataclasses.replace(config.optim, warmup=paper_warmup)
    L.seed_everything(config.seed, workers=True, verbose=False)  # as train() does before building the model
    start = prepare_model(config, VLMoTokenizer(vocab, lowercase=True).vocab_size).state_dict()
    outcome = train(config)
    assert outcome.summary["global_step"] == 1
    trained = outcome.model.state_dict()
    assert set(start) - set(trained) == {"transformer.mask_token"} | {k for k in start if k.startswith("mim_head")}
    assert all(torch.equal(trained[key], start[key]) for key in trained), "stage 1 changed a weight"


def test_stage2_refuses_a_stage1_model_with_40_positions(paper: dict, tiny_world: Path, tmp_path: Path):
    """Why conf/paper's stage 1 builds 196 text positions: positions can be truncated, never extended."""
    vocab = tiny_world.parent / "vocab" / "vocab.txt"
    section = dict(
        paper["pretrain_stage1"],
        init="vlmo_tiny",
        init_from=None,
        vocab_file=str(vocab),
        model_overrides={"max_text_len_of_initckpt": 196},
    )  # a 196 budget, but 40 positions
    vocab_size = VLMoTokenizer(vocab, lowercase=True).vocab_size
    model = prepare_model(configure_run(section, "stage 1 with 40 text positions"), vocab_size)
    model.set_tasks(())
    stage1_dir = model.save_pretrained(tmp_path / "stage1", vocab_file=vocab)
    stage2 = configure_run(paper["pretrain_stage2"], "conf/paper pretrain_stage2", init=stage1_dir)
    with pytest.raises(CheckpointMismatchError, match="40 rows but max_text_len=196: cannot extend"):
        prepare_model(stage2, vocab_size)


@pytest.mark.parametrize(
    "section, dataset",
    [
        ("finetune_vqa", "vqav2"),
        ("finetune_nlvr2", "nlvr2"),
        ("finetune_retrieval_coco", "coco"),
        ("finetune_retrieval_f30k", "f30k"),
    ],
)
def test_finetunes_load_the_pretrained_model_at_their_resolution(
    paper: dict, tiny_world: Path, tmp_path: Path, section: str, dataset: str
):
    """conf/paper's fine-tunes start from the 224 px pretrained model at 480 (VQA) / 384 px: the image part of the
    relative-position table is resized when the model loads (spec §2 loader rule 3), text stays at 40."""
    vocab = tiny_world.parent / "vocab" / "vocab.txt"
    vocab_size = VLMoTokenizer(vocab, lowercase=True).vocab_size
    pretrained = create_model("vlmo_tiny", vocab_size=vocab_size, max_text_len_of_initckpt=196, image_size=224)
    pretrained_dir = pretrained.save_pretrained(tmp_path / "stage3", vocab_file=vocab)
    config = configure_run(
        paper[section], f"conf/paper {section}", init=pretrained_dir, dataset_dirs={dataset: tiny_world / dataset}
    )
    model = prepare_model(config, vocab_size)
    size = config.model_overrides["image_size"]
    assert model.config.image_size == size == {"finetune_vqa": 480}.get(section, 384)
    layout = RelPosLayout(size // 16, 196)
    assert model.relative_position_bias_table.shape[0] == layout.num_rows
    # the text and cross-modal rows are copied verbatim, only the patch-distance rows are resampled
    old_table = pretrained.relative_position_bias_table
    extra = old_table.shape[0] - (2 * 224 // 16 - 1) ** 2
    assert torch.equal(model.relative_position_bias_table[-extra:], old_table[-extra:])
    assert model.config.max_text_len == config.data.max_text_len == 40
    assert model.config.drop_path_rate == config.model_overrides["drop_path_rate"]
