"""What a BEiT checkpoint load prints (stage 1's ``init_from``): one short info line when it fits, a short warning
with counts and a few key names when keys really are missing or unexpected."""

from __future__ import annotations

import logging

import torch

from vlmo_pipeline.models import VLMo, load_beit_checkpoint
from vlmo_pipeline.models.config import get_config

VOCAB = 64


def _beit_from(model: VLMo) -> dict[str, torch.Tensor]:
    """A BEiT-v1-shaped (mean pooling) state dict of ``model``'s image side."""
    beit: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if not key.startswith("transformer.") or any(part in key for part in ("mlp_text", "norm2_text", "_vl")):
            continue
        if key.startswith("transformer.norm.") or key == "transformer.mask_token":
            continue
        beit[key[len("transformer.") :].replace("mlp_imag", "mlp").replace("norm2_imag", "norm2")] = value.clone()
    rows, heads = model.layout.num_image_distances, model.config.num_heads
    for layer in range(model.config.depth):
        beit[f"blocks.{layer}.attn.relative_position_bias_table"] = model.relative_position_bias_table[
            :rows, layer * heads : (layer + 1) * heads
        ].clone()
    beit["fc_norm.weight"], beit["fc_norm.bias"] = (
        torch.ones(model.config.embed_dim),
        torch.zeros(model.config.embed_dim),
    )
    return beit


def _records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "vlmo_pipeline.models.checkpoint"]


def test_correct_beit_load_prints_one_short_info_line(caplog):
    caplog.set_level(logging.INFO)
    config = get_config("vlmo_tiny", vocab_size=VOCAB, loss_names=("textmlm",))
    beit = _beit_from(VLMo(config))
    model = load_beit_checkpoint(config, beit)
    records = _records(caplog)
    assert [record.levelno for record in records] == [logging.INFO]
    message = records[0].getMessage()
    assert len(message) < 200 and "tensors loaded" in message and "keep their initialisation" in message
    report = model.load_report
    assert report.problems() == {} and report.loaded == len(beit) - 2 - model.config.depth + 1
    assert "text_embeddings.word_embeddings.weight" in report.missing  # the full report still lists every key


def test_beit_load_with_real_problems_warns_briefly(caplog):
    caplog.set_level(logging.INFO)
    config = get_config("vlmo_tiny", vocab_size=VOCAB)
    beit = _beit_from(VLMo(config))
    for layer in range(config.depth):
        del beit[f"blocks.{layer}.attn.qkv.weight"]
    beit["blocks.0.attn.extra_bias"] = torch.zeros(3)
    model = load_beit_checkpoint(config, beit)
    records = _records(caplog)
    assert [record.levelno for record in records] == [logging.WARNING]
    message = records[0].getMessage()
    assert f"{config.depth} missing (transformer.blocks.0.attn.qkv.weight, " in message
    assert "1 unexpected (transformer.blocks.0.attn.extra_bias)" in message
    assert "text_embeddings" not in message and len(message) < 400
    assert set(model.load_report.problems()) == {"missing", "unexpected"}
