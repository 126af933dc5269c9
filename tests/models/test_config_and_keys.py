"""State-dict keys/shapes and parameter counts against the official layout (spec §1.1, §2)."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from vlmo_pipeline.models import VLMoConfig, create_model, export_official_state_dict, get_config, list_configs

ARCHS = {
    # name: (dim, depth, vlffn_start, layer_scale+relpos (Base/Large) vs abs-pos (Base-plus))
    "vlmo_base_patch16": (768, 12, 10, True),
    "vlmo_large_patch16": (1024, 24, 21, True),
    "vlmo_base_plus_patch16": (544, 24, 21, False),
}
TASK_SETS = {
    "pretrain": ("itc", "itm", "mlm"),
    "irtr": ("irtr",),
    "vqa": ("vqa",),
    "nlvr2": ("nlvr2",),
    "textmlm": ("textmlm",),
}


def official_layout(dim: int, depth: int, vlffn_start: int, relpos: bool, tasks: tuple[str, ...]) -> dict:
    """Expected official state-dict {key: shape}, written from the spec's tables (not from our model)."""
    hidden, vocab, text_len = 4 * dim, 30522, 40
    if "textmlm" in tasks:
        vlffn_start = depth  # stage 2 builds no VL-FFN
    layout: dict[str, tuple] = {}
    if relpos:
        heads = dim // 64
        layout["relative_position_bias_table"] = (1126, heads * depth)
    else:
        layout["transformer.pos_embed"] = (1, 197, dim)
    layout["transformer.cls_token"] = (1, 1, dim)
    layout["transformer.patch_embed.proj.weight"] = (dim, 3, 16, 16)
    layout["transformer.patch_embed.proj.bias"] = (dim,)
    for i in range(depth):
        p = f"transformer.blocks.{i}."
        if relpos:
            layout[p + "gamma_1"] = layout[p + "gamma_2"] = (dim,)
        for name in ("norm1", "norm2_text", "norm2_imag") + (("norm2_vl",) if i >= vlffn_start else ()):
            layout[p + name + ".weight"] = layout[p + name + ".bias"] = (dim,)
        layout[p + "attn.q_bias"] = layout[p + "attn.v_bias"] = (dim,)
        layout[p + "attn.qkv.weight"] = (3 * dim, dim)
        layout[p + "attn.proj.weight"] = (dim, dim)
        layout[p + "attn.proj.bias"] = (dim,)
        for expert in ("mlp_text", "mlp_imag") + (("mlp_vl",) if i >= vlffn_start else ()):
            layout[p + expert + ".fc1.weight"] = (hidden, dim)
            layout[p + expert + ".fc1.bias"] = (hidden,)
            layout[p + expert + ".fc2.weight"] = (dim, hidden)
            layout[p + expert + ".fc2.bias"] = (dim,)
    layout["transformer.norm.weight"] = layout["transformer.norm.bias"] = (dim,)
    layout["text_embeddings.position_ids"] = (1, text_len)
    layout["text_embeddings.word_embeddings.weight"] = (vocab, dim)
    layout["text_embeddings.position_embeddings.weight"] = (text_len, dim)
    layout["text_embeddings.token_type_embeddings.weight"] = (2, dim)
    layout["text_embeddings.LayerNorm.weight"] = layout["text_embeddings.LayerNorm.bias"] = (dim,)
    layout["token_type_embeddings.weight"] = (3 if "nlvr2" in tasks else 2, dim)
    layout["pooler.dense.weight"] = (dim, dim)
    layout["pooler.dense.bias"] = (dim,)
    if "mlm" in tasks or "textmlm" in tasks:
        layout["mlm_score.bias"] = (vocab,)
        layout["mlm_score.transform.dense.weight"] = (dim, dim)
        layout["mlm_score.transform.dense.bias"] = (dim,)
        layout["mlm_score.transform.LayerNorm.weight"] = layout["mlm_score.transform.LayerNorm.bias"] = (dim,)
        layout["mlm_score.decoder.weight"] = (vocab, dim)
    if "itm" in tasks:
        layout["itm_score.fc.weight"] = (2, dim)
        layout["itm_score.fc.bias"] = (2,)
    if "itc" in tasks or "irtr" in tasks:
        layout["itc_text_proj.fc.weight"] = layout["itc_image_proj.fc.weight"] = (dim, dim)
        layout["logit_scale"] = ()
    if "itc" in tasks:
        layout["itc_vl_text_proj.fc.weight"] = layout["itc_vl_image_proj.fc.weight"] = (dim, dim)
        layout["logit_vl_scale"] = ()
    for head, outputs, width in (("vqa", 3129, dim), ("nlvr2", 2, 2 * dim)):
        if head in tasks:
            p = f"{head}_classifier."
            layout[p + "0.weight"], layout[p + "0.bias"] = (2 * dim, width), (2 * dim,)
            layout[p + "1.weight"] = layout[p + "1.bias"] = (2 * dim,)
            layout[p + "3.weight"], layout[p + "3.bias"] = (outputs, 2 * dim), (outputs,)
    return layout


@functools.cache
def _cached_meta_model(name: str, overrides: tuple):
    with torch.device("meta"):
        return create_model(name, **dict(overrides))


def meta_model(name: str, **overrides):
    """Parameter-free (meta device) model, built once per (name, overrides); do not mutate it."""
    return _cached_meta_model(name, tuple(sorted(overrides.items())))


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("task_set", list(TASK_SETS))
def test_state_dict_matches_official_layout(arch, task_set):
    dim, depth, vlffn_start, relpos = ARCHS[arch]
    tasks = TASK_SETS[task_set]
    model = meta_model(arch, loss_names=tasks)
    state = model.state_dict()
    actual = {k: tuple(v.shape) for k, v in state.items()}
    expected = official_layout(dim, depth, vlffn_start, relpos, tasks)
    assert sorted(set(actual) - set(expected)) == [] and sorted(set(expected) - set(actual)) == []
    assert actual == expected
    assert state["text_embeddings.position_ids"].dtype == torch.int64
    # Export keeps the official layout too.
    assert {k: tuple(v.shape) for k, v in export_official_state_dict(model).items()} == expected


def test_base_key_counts_per_task():
    counts = {
        name: len(meta_model("vlmo_base_patch16", loss_names=tasks).state_dict()) for name, tasks in TASK_SETS.items()
    }
    assert counts == {"pretrain": 293, "irtr": 282, "vqa": 285, "nlvr2": 285, "textmlm": 273}


BACKBONE_PREFIXES = ("transformer.", "text_embeddings.", "token_type_embeddings.", "relative_position_bias_table")


@pytest.mark.parametrize(
    "arch,backbone,full",
    [
        ("vlmo_base_patch16", 175_430_496, 202_445_470),
        ("vlmo_large_patch16", 561_544_448, 599_127_102),
        ("vlmo_base_plus_patch16", 166_567_360, 184_980_734),
    ],
)
def test_parameter_counts(arch, backbone, full):
    model = meta_model(arch)
    params = dict(model.named_parameters())
    assert sum(p.numel() for n, p in params.items() if n.startswith(BACKBONE_PREFIXES)) == backbone
    assert sum(p.numel() for p in params.values()) == full


def test_block_structure_and_registry():
    assert {"vlmo_base_patch16", "vlmo_large_patch16", "vlmo_base_plus_patch16", "vlmo_tiny", "vlmo_small"} <= set(
        list_configs()
    )
    model = meta_model("vlmo_large_patch16")
    assert [i for i, b in enumerate(model.transformer.blocks) if b.has_vlffn] == [21, 22, 23]
    plus = meta_model("vlmo_base_plus_patch16")
    assert plus.relative_position_bias_table is None and plus.transformer.blocks[0].gamma_1 is None
    assert plus.transformer.blocks[0].attn.head_dim == 34
    assert plus.text_embeddings.use_absolute_positions and not model.text_embeddings.use_absolute_positions


def test_mim_adds_only_mask_token():
    plain = set(meta_model("vlmo_tiny").state_dict())
    with_mim = set(meta_model("vlmo_tiny", loss_names=("itc", "itm", "mlm", "mim")).state_dict())
    assert with_mim - plain == {"transformer.mask_token"}
    assert "transformer.mask_token" not in export_official_state_dict(meta_model("vlmo_tiny", loss_names=("mim",)))


def test_any_size_constructible_and_validated():
    config = get_config(
        "vlmo_tiny",
        embed_dim=96,
        depth=3,
        num_heads=3,
        vlffn_start_layer_index=1,
        image_size=48,
        patch_size=8,
        vocab_size=50,
        max_text_len=12,
        mlp_ratio=2.0,
    )
    model = create_model(
        "vlmo_tiny",
        **{
            k: getattr(config, k)
            for k in (
                "embed_dim",
                "depth",
                "num_heads",
                "vlffn_start_layer_index",
                "image_size",
                "patch_size",
                "vocab_size",
                "max_text_len",
                "mlp_ratio",
            )
        },
    )
    assert model.relative_position_bias_table.shape == ((2 * 6 - 1) ** 2 + 3 + 2 * 40 + 2, 9)
    assert model.transformer.blocks[0].mlp_text.fc1.out_features == 192
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        VLMoConfig(embed_dim=100, num_heads=3)
    with pytest.raises(ValueError, match="max_text_len_of_initckpt"):
        get_config("vlmo_tiny", max_text_len=41)
    with pytest.raises(ValueError, match="unknown loss_names"):
        get_config("vlmo_tiny", loss_names=("itc", "captioning"))
    with pytest.raises(ValueError, match=r"VLMoConfig overrides: unknown key\(s\) \['hidden_size'\]"):
        get_config("vlmo_tiny", hidden_size=3)
    with pytest.raises(KeyError, match="unknown VLMo config"):
        get_config("vlmo_huge")


def test_config_json_round_trip():
    config = get_config("vlmo_small", loss_names=("vqa",), vqa_num_labels=17)
    restored = VLMoConfig.from_dict(json.loads(config.to_json()))
    assert restored == config
    assert restored.loss_names == ("vqa",)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \[.bogus.\]"):
        VLMoConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_linear_init_std_sets_every_linear_weight_but_not_embeddings():
    torch.manual_seed(0)
    tiny = create_model("vlmo_tiny", vocab_size=500, loss_names=("itc", "itm", "mlm", "vqa"), vqa_num_labels=20)
    wide = create_model(
        "vlmo_tiny", vocab_size=500, loss_names=("itc", "itm", "mlm", "vqa"), vqa_num_labels=20, linear_init_std=0.02
    )
    assert tiny.config.linear_init_std == pytest.approx(128**-0.5)
    for model, std in ((tiny, 128**-0.5), (wide, 0.02)):
        linears = {name: module.weight for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
        # blocks, pooler and the heads created from loss_names (ITC projections, ITM, MLM, VQA) all follow the config
        for part in (
            "transformer.blocks.0.attn.qkv",
            "transformer.blocks.3.mlp_vl.fc1",
            "pooler.dense",
            "itc_text_proj.fc",
            "itm_score.fc",
            "vqa_classifier.0",
        ):
            weight = next(w for name, w in linears.items() if name.startswith(part))
            assert float(weight.detach().std()) == pytest.approx(std, rel=0.15), (part, std)
        assert float(model.text_embeddings.word_embeddings.weight.detach().std()) == pytest.approx(0.02, rel=0.15)
    # heads added later (fine-tuning) use the model's own value
    tiny.set_tasks(["nlvr2"])
    assert float(tiny.nlvr2_classifier[0].weight.detach().std()) == pytest.approx(128**-0.5, rel=0.15)
    with pytest.raises(ValueError, match="linear_init_std"):
        create_model("vlmo_tiny", linear_init_std=0.0)
