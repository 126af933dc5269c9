"""save/from_pretrained, official checkpoint export/load, loader transformations, BEiT mapping."""

from __future__ import annotations

import re

import pytest
import torch

from vlmo_pipeline.models import (
    CheckpointMismatchError,
    RelPosLayout,
    VLMo,
    create_model,
    export_official_state_dict,
    get_config,
    infer_config,
    load_beit_checkpoint,
    load_official_checkpoint,
)
from vlmo_pipeline.models.checkpoint import NON_PERSISTENT_KEYS, resize_relative_position_table

VOCAB = 90


def tiny(**overrides) -> VLMo:
    torch.manual_seed(0)
    model = create_model("vlmo_tiny", vocab_size=VOCAB, **overrides)
    with torch.no_grad():
        for parameter in model.parameters():  # distinctive values everywhere (the table starts at 0)
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(5, VOCAB, (2, 40), generator=generator)
    masks = torch.ones(2, 40, dtype=torch.long)
    masks[1, 20:] = 0
    return ids, masks, torch.randn(2, 3, 64, 64, generator=generator)


def assert_same_weights(a: VLMo, b: VLMo) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_save_and_from_pretrained_round_trip(tmp_path, inputs):
    model = tiny(loss_names=("itc", "itm", "mlm", "vqa", "mim"), vqa_num_labels=5)
    vocab = tmp_path / "source_vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nred\n")
    model.save_pretrained(tmp_path / "m", vocab_file=vocab)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    restored = VLMo.from_pretrained(tmp_path / "m").eval()
    assert restored.config == model.config
    assert_same_weights(model, restored)
    with torch.no_grad():
        assert torch.equal(model.vqa_logits(*inputs), restored.vqa_logits(*inputs))
    via_factory = create_model(tmp_path / "m")
    assert_same_weights(model, via_factory)


def test_from_pretrained_with_new_tasks_needs_non_strict(tmp_path):
    tiny().save_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError, match="vqa_classifier"):
        VLMo.from_pretrained(tmp_path, loss_names=("vqa",))
    model = VLMo.from_pretrained(tmp_path, strict=False, loss_names=("irtr", "vqa"))
    assert model.vqa_classifier is not None and model.itm_score is None


def test_official_export_and_load_round_trip(inputs):
    model = tiny()
    exported = export_official_state_dict(model)
    assert exported["text_embeddings.position_ids"].dtype == torch.int64
    loaded = load_official_checkpoint(exported).eval()
    assert_same_weights(model, loaded)
    assert loaded.config.loss_names == ("mlm", "itm", "itc")
    for field in (
        "embed_dim",
        "depth",
        "num_heads",
        "vlffn_start_layer_index",
        "image_size",
        "max_text_len",
        "max_text_len_of_initckpt",
        "vocab_size",
    ):
        assert getattr(loaded.config, field) == getattr(model.config, field), field
    with torch.no_grad():
        a, b = model.fuse(*inputs), loaded.fuse(*inputs)
        assert torch.equal(a.cls_feats, b.cls_feats) and torch.equal(a.image_feats, b.image_feats)


def test_container_with_module_prefix_and_index_keys(tmp_path, inputs):
    model = tiny(loss_names=("nlvr2",))
    state = export_official_state_dict(model)
    state["relative_position_index"] = model.relative_position_index.clone()
    state["text_relative_position_index"] = model.text_relative_position_index.clone()
    state["text_imag_relative_position_index"] = model.text_imag_relative_position_index.float()
    del state["text_embeddings.position_ids"]  # newer transformers do not persist it
    wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}
    path = tmp_path / "last.ckpt"
    torch.save(wrapped, path)
    loaded = load_official_checkpoint(path)
    assert_same_weights(model, loaded)
    assert "nlvr2" in loaded.config.loss_names and loaded.token_type_embeddings.weight.shape[0] == 3
    for container in ("module", "model"):
        assert_same_weights(model, load_official_checkpoint({container: {k: v for k, v in state.items()}}))


def test_strict_load_lists_offending_keys():
    state = export_official_state_dict(tiny())
    state["transformer.blocks.0.attn.k_bias"] = torch.zeros(128)
    del state["pooler.dense.bias"]
    with pytest.raises(CheckpointMismatchError) as error:
        load_official_checkpoint(state)
    message = str(error.value)
    assert "1 missing key(s): pooler.dense.bias" in message
    assert "1 unexpected key(s): transformer.blocks.0.attn.k_bias" in message
    state = export_official_state_dict(tiny())
    state["itm_score.fc.weight"] = torch.zeros(3, 128)
    with pytest.raises(
        CheckpointMismatchError, match=re.escape("itm_score.fc.weight: checkpoint (3, 128) vs model (2, 128)")
    ):
        load_official_checkpoint(state)


def test_stage2_positions_truncated_to_max_text_len(inputs):
    stage2 = tiny(loss_names=("textmlm",), max_text_len=64, max_text_len_of_initckpt=64)
    state = export_official_state_dict(stage2)
    assert state["text_embeddings.position_embeddings.weight"].shape[0] == 64
    assert not any("mlp_vl" in key for key in state)
    loaded = load_official_checkpoint(state, max_text_len=40)
    assert loaded.config.max_text_len == 40 and loaded.config.max_text_len_of_initckpt == 64
    assert torch.equal(
        loaded.text_embeddings.position_embeddings.weight, state["text_embeddings.position_embeddings.weight"][:40]
    )
    assert torch.equal(loaded.text_embeddings.position_ids, torch.arange(40)[None])
    assert torch.equal(loaded.relative_position_bias_table, stage2.relative_position_bias_table)
    ids, masks, _ = inputs
    with torch.no_grad():  # relative positions only: the text-only pass is unchanged by the truncation
        assert torch.allclose(loaded.encode_text_mlm(ids, masks), stage2.encode_text_mlm(ids, masks), atol=1e-6)


def test_load_at_higher_resolution_resizes_table():
    model = tiny()
    loaded = load_official_checkpoint(export_official_state_dict(model), image_size=96)
    source, target = RelPosLayout(4, 40), RelPosLayout(6, 40)
    table = loaded.relative_position_bias_table
    assert table.shape == (target.num_rows, 16)
    assert torch.equal(table[11 * 11 :], model.relative_position_bias_table[7 * 7 :])
    assert torch.allclose(table, resize_relative_position_table(model.relative_position_bias_table, 4, 6))
    assert (
        loaded.relative_position_index.shape == (37, 37)
        and source.num_rows == model.relative_position_bias_table.shape[0]
    )


def test_base_plus_style_pos_embed_interpolated():
    model = tiny(layer_scale_init_values=None, use_relative_position_bias=False, use_abs_pos_emb=True)
    state = export_official_state_dict(model)
    loaded = load_official_checkpoint(state, num_heads=4, image_size=96)
    assert loaded.transformer.pos_embed.shape == (1, 37, 128)
    assert torch.equal(loaded.transformer.pos_embed[:, 0], model.transformer.pos_embed[:, 0])
    assert loaded.text_embeddings.use_absolute_positions


@pytest.mark.parametrize("name", ["vlmo_base_patch16", "vlmo_large_patch16", "vlmo_base_plus_patch16"])
def test_infer_config_recovers_official_sizes(name):
    with torch.device("meta"):
        model = create_model(name, loss_names=("vqa",))
    config = infer_config(export_official_state_dict(model))
    reference = get_config(name)
    for field in (
        "embed_dim",
        "depth",
        "num_heads",
        "mlp_ratio",
        "vlffn_start_layer_index",
        "image_size",
        "patch_size",
        "layer_scale_init_values",
        "use_relative_position_bias",
        "use_abs_pos_emb",
        "max_text_len",
        "max_text_len_of_initckpt",
        "vocab_size",
    ):
        assert getattr(config, field) == getattr(reference, field), field
    assert config.loss_names == ("vqa",) and config.vqa_num_labels == 3129


def test_weights_only_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "callback": torch.nn.Linear(1, 1)}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_official_checkpoint(path)


def beit_state_dict_from(model: VLMo) -> dict[str, torch.Tensor]:
    """A BEiT-v1-shaped (fine-tuned, mean pooling) state dict holding ``model``'s image weights."""
    config = model.config
    beit: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if not key.startswith("transformer.") or "mlp_text" in key or "norm2_text" in key or "_vl" in key:
            continue
        if key.startswith("transformer.norm."):
            continue  # mean-pooling BEiT has fc_norm instead of norm
        beit[key[len("transformer.") :].replace("mlp_imag", "mlp").replace("norm2_imag", "norm2")] = value.clone()
    image_rows = model.layout.num_image_distances
    heads = config.num_heads
    for layer in range(config.depth):
        columns = model.relative_position_bias_table[:image_rows, layer * heads : (layer + 1) * heads]
        beit[f"blocks.{layer}.attn.relative_position_bias_table"] = columns.clone()
        beit[f"blocks.{layer}.attn.relative_position_index"] = torch.zeros(17, 17, dtype=torch.long)
    beit["fc_norm.weight"], beit["fc_norm.bias"] = torch.ones(128), torch.zeros(128)
    beit["head.weight"], beit["head.bias"] = torch.zeros(1000, 128), torch.zeros(1000)
    return beit


def test_beit_mapping(tmp_path):
    source = tiny(loss_names=("textmlm",))
    beit = beit_state_dict_from(source)
    torch.save({"model": beit}, tmp_path / "beit.pth")
    target = load_beit_checkpoint(
        get_config("vlmo_tiny", vocab_size=VOCAB, loss_names=("textmlm",)), tmp_path / "beit.pth"
    )
    report = target.load_report
    assert report.unexpected == [] and report.mismatched == []
    assert "transformer.norm.weight" in report.missing and "text_embeddings.word_embeddings.weight" in report.missing
    assert not any("mlp_imag" in key or "norm2_imag" in key or "attn" in key for key in report.missing)
    for key, value in source.state_dict().items():
        if "mlp_imag" in key or "norm2_imag" in key or ".attn." in key or "patch_embed" in key or "cls_token" in key:
            assert torch.equal(target.state_dict()[key], value), key
    rows = source.layout.num_image_distances
    assert torch.equal(target.relative_position_bias_table[:rows], source.relative_position_bias_table[:rows])
    assert target.relative_position_bias_table[rows:].abs().sum() == 0  # text rows stay at their zero init
    # Same BEiT weights into a larger grid: the image rows are resized, the index keys are ignored.
    bigger = load_beit_checkpoint(get_config("vlmo_tiny", vocab_size=VOCAB, image_size=96), beit)
    expected = resize_relative_position_table(source.relative_position_bias_table[:rows], 4, 6)
    assert torch.allclose(bigger.relative_position_bias_table[: RelPosLayout(6, 40).num_image_distances], expected)


def test_non_persistent_keys_match_official_names():
    model = tiny()
    assert set(NON_PERSISTENT_KEYS) == {name for name, _ in model.named_buffers() if "relative_position_index" in name}
    assert not set(NON_PERSISTENT_KEYS) & set(model.state_dict())
