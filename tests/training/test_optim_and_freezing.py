"""Parameter groups reproduce the official substring quirks (spec §5.1); schedule; stage freezing (spec §4.4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlmo_pipeline.training.freezing import (
    STAGE1_TRAINABLE,
    STAGE2_TRAINABLE,
    apply_trainable_substrings,
    freeze_report,
    unmatched_substrings,
)
from vlmo_pipeline.training.optim import (
    OptimConfig,
    build_optimizer,
    configure_optimization,
    linear_warmup_decay,
    param_groups,
    resolve_warmup_steps,
)

D = 4


def _vector() -> nn.Parameter:
    return nn.Parameter(torch.randn(D))


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D, 2 * D)
        self.fc2 = nn.Linear(2 * D, D)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_bias = _vector()
        self.v_bias = _vector()
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D)


class _Block(nn.Module):
    def __init__(self, with_vl: bool) -> None:
        super().__init__()
        self.gamma_1, self.gamma_2 = _vector(), _vector()
        self.norm1 = nn.LayerNorm(D)
        self.attn = _Attention()
        self.norm2_text, self.norm2_imag = nn.LayerNorm(D), nn.LayerNorm(D)
        self.mlp_text, self.mlp_imag = _Mlp(), _Mlp()
        if with_vl:
            self.norm2_vl, self.mlp_vl = nn.LayerNorm(D), _Mlp()


class _PatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, D, 2, 2)


class _Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, D))
        self.patch_embed = _PatchEmbed()
        self.blocks = nn.ModuleList([_Block(False), _Block(True)])
        self.norm = nn.LayerNorm(D)


class _TextEmbeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(10, D)
        self.position_embeddings = nn.Embedding(6, D)
        self.token_type_embeddings = nn.Embedding(2, D)
        self.LayerNorm = nn.LayerNorm(D)


class _Transform(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(D, D)
        self.LayerNorm = nn.LayerNorm(D)


class _MlmHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transform = _Transform()
        self.decoder = nn.Linear(D, 10, bias=False)
        self.bias = nn.Parameter(torch.zeros(10))


class _Fc(nn.Module):
    def __init__(self, out: int, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(D, out, bias=bias)


def _classifier(in_dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, 2 * D), nn.LayerNorm(2 * D), nn.GELU(), nn.Linear(2 * D, out))


class OfficialNamedModel(nn.Module):
    """A tiny module whose parameter names are exactly the official VLMo state-dict keys (spec §2)."""

    def __init__(self) -> None:
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(torch.randn(7, 2 * 2))
        self.logit_scale = nn.Parameter(torch.tensor(2.6593))
        self.logit_vl_scale = nn.Parameter(torch.tensor(2.6593))
        self.transformer = _Transformer()
        self.text_embeddings = _TextEmbeddings()
        self.token_type_embeddings = nn.Embedding(2, D)
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(D, D)
        self.mlm_score = _MlmHead()
        self.itm_score = _Fc(2)
        self.itc_text_proj, self.itc_image_proj = _Fc(D, bias=False), _Fc(D, bias=False)
        self.vqa_classifier = _classifier(D, 5)
        self.nlvr2_classifier = _classifier(2 * D, 2)


# Written out by hand from spec §5.1 (not derived with the code under test).
EXPECTED_NO_DECAY = {
    "relative_position_bias_table",  # contains "bias"
    "transformer.patch_embed.proj.bias",
    "transformer.norm.weight",
    "transformer.norm.bias",
    "text_embeddings.LayerNorm.weight",
    "text_embeddings.LayerNorm.bias",
    "pooler.dense.bias",
    "itm_score.fc.bias",
    "mlm_score.bias",
    "mlm_score.transform.dense.bias",
    "mlm_score.transform.LayerNorm.weight",
    "mlm_score.transform.LayerNorm.bias",
}
for _i in (0, 1):
    EXPECTED_NO_DECAY |= {
        f"transformer.blocks.{_i}.{name}"
        for name in (
            "norm1.weight",
            "norm1.bias",
            "attn.q_bias",
            "attn.v_bias",
            "attn.proj.bias",
            "norm2_text.bias",
            "norm2_imag.bias",
            "mlp_text.fc1.bias",
            "mlp_text.fc2.bias",
            "mlp_imag.fc1.bias",
            "mlp_imag.fc2.bias",
        )
    }
EXPECTED_NO_DECAY |= {
    "transformer.blocks.1.norm2_vl.bias",
    "transformer.blocks.1.mlp_vl.fc1.bias",
    "transformer.blocks.1.mlp_vl.fc2.bias",
}
EXPECTED_HEAD_NO_DECAY = {
    f"{head}.{index}.bias" for head in ("vqa_classifier", "nlvr2_classifier") for index in (0, 1, 3)
}
EXPECTED_HEAD_DECAY = {
    f"{head}.{index}.weight" for head in ("vqa_classifier", "nlvr2_classifier") for index in (0, 1, 3)
}  # incl. the head LayerNorm ".1.weight"


def _groups_by_name(groups: list[dict]) -> dict[str, dict]:
    return {group["name"]: group for group in groups}


def test_param_groups_reproduce_the_official_substring_quirks():
    model = OfficialNamedModel()
    groups = _groups_by_name(param_groups(model, lr=1e-4, weight_decay=0.01, lr_mult=20.0))
    all_names = {name for name, _ in model.named_parameters()}
    assert set(groups["no_decay"]["param_names"]) == EXPECTED_NO_DECAY
    assert set(groups["head_no_decay"]["param_names"]) == EXPECTED_HEAD_NO_DECAY
    assert set(groups["head_decay"]["param_names"]) == EXPECTED_HEAD_DECAY
    decayed = set(groups["decay"]["param_names"])
    assert decayed == all_names - EXPECTED_NO_DECAY - EXPECTED_HEAD_NO_DECAY - EXPECTED_HEAD_DECAY
    # The quirks spelled out in the spec:
    for name in (
        "transformer.blocks.0.norm2_text.weight",
        "transformer.blocks.0.norm2_imag.weight",
        "transformer.blocks.1.norm2_vl.weight",
        "transformer.blocks.0.gamma_1",
        "transformer.blocks.1.gamma_2",
        "transformer.cls_token",
        "logit_scale",
        "logit_vl_scale",
        "text_embeddings.word_embeddings.weight",
        "token_type_embeddings.weight",
    ):
        assert name in decayed, name
    assert groups["decay"]["weight_decay"] == 0.01 and groups["no_decay"]["weight_decay"] == 0.0
    assert groups["decay"]["lr"] == groups["no_decay"]["lr"] == 1e-4
    assert groups["head_decay"]["lr"] == groups["head_no_decay"]["lr"] == pytest.approx(2e-3)
    for group in groups.values():
        assert len(group["params"]) == len(group["param_names"])


def test_param_groups_skip_frozen_parameters_and_empty_groups():
    model = OfficialNamedModel()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith(("vqa_classifier", "nlvr2_classifier")))
    groups = param_groups(model, lr=1.0)
    assert [group["name"] for group in groups] == ["decay", "no_decay"]
    listed = {name for group in groups for name in group["param_names"]}
    assert not any(name.startswith("vqa_classifier") for name in listed)


def test_build_optimizer_uses_adamw_with_official_hyperparameters():
    optimizer = build_optimizer(OfficialNamedModel(), OptimConfig(lr=3e-5, lr_mult=20.0, warmup=0.1))
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-8
    frozen = OfficialNamedModel().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        build_optimizer(frozen, OptimConfig())


def test_optim_config_validates_and_normalises():
    config = OptimConfig(betas=[0.9, 0.98], head_names=["vqa_classifier"])
    assert config.betas == (0.9, 0.98) and config.head_names == ("vqa_classifier",)
    with pytest.raises(ValueError, match="lr"):
        OptimConfig(lr=0.0)


def _lr_after(steps: int, warmup, total: int) -> float:
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = linear_warmup_decay(optimizer, warmup, total)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("warmup", [10, 0.1])
def test_schedule_warms_up_linearly_then_decays_to_zero(warmup):
    assert _lr_after(0, warmup, 100) == 0.0
    assert _lr_after(5, warmup, 100) == pytest.approx(0.5)
    assert _lr_after(10, warmup, 100) == pytest.approx(1.0)  # peak
    assert _lr_after(55, warmup, 100) == pytest.approx(0.5)
    assert _lr_after(99, warmup, 100) == pytest.approx(1 / 90)
    assert _lr_after(100, warmup, 100) == 0.0
    assert _lr_after(120, warmup, 100) == 0.0


def test_schedule_without_warmup_and_errors():
    assert _lr_after(0, 0, 4) == 1.0
    assert _lr_after(2, 0, 4) == pytest.approx(0.5)
    assert resolve_warmup_steps(0.25, 10) == 2
    with pytest.raises(ValueError, match="fraction"):
        resolve_warmup_steps(1.5, 10)
    with pytest.raises(ValueError, match="longer than training"):
        _lr_after(0, 20, 10)


def test_configure_optimization_applies_lr_mult_through_the_schedule():
    model = OfficialNamedModel()
    setup = configure_optimization(model, OptimConfig(lr=1e-3, lr_mult=10.0, warmup=2), total_steps=10)
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert setup["lr_scheduler"]["interval"] == "step"
    optimizer.step()
    scheduler.step()  # step 1 of 2 warm-up steps → factor 0.5
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs["decay"] == pytest.approx(5e-4) and lrs["head_decay"] == pytest.approx(5e-3)


# --------------------------------------------------------------------------------------------------- freezing


def test_stage2_freezing_leaves_exactly_the_official_set_trainable():
    model = OfficialNamedModel()
    trainable = set(apply_trainable_substrings(model, STAGE2_TRAINABLE, require_all_match=True))
    expected = {
        name
        for name, _ in model.named_parameters()
        if name.startswith(("text_embeddings.", "token_type_embeddings.", "mlm_score.", "transformer.norm."))
        or ".mlp_text." in name
        or ".norm2_text." in name
        or name == "relative_position_bias_table"
    }
    assert trainable == expected
    for frozen_name in (
        "transformer.blocks.0.attn.qkv.weight",
        "transformer.blocks.0.norm1.weight",
        "transformer.blocks.0.gamma_1",
        "transformer.blocks.1.mlp_imag.fc1.weight",
        "transformer.patch_embed.proj.weight",
        "transformer.cls_token",
        "transformer.blocks.1.mlp_vl.fc1.weight",
        "logit_scale",
    ):
        assert frozen_name not in trainable


def test_stage2_frozen_weights_are_bit_identical_after_training_steps():
    torch.manual_seed(0)
    model = OfficialNamedModel()
    trainable = set(apply_trainable_substrings(model, STAGE2_TRAINABLE))
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2))
    for _ in range(3):
        optimizer.zero_grad()
        # A loss touching every parameter; frozen ones get no gradient and must not move (no decay either).
        loss = sum(((parameter - torch.randn_like(parameter)) ** 2).sum() for parameter in model.parameters())
        loss.backward()
        optimizer.step()
    for name, parameter in model.named_parameters():
        if name in trainable:
            assert not torch.equal(parameter, before[name]), name
        else:
            assert torch.equal(parameter, before[name]), name


def test_stage1_freezing_trains_the_image_side_only():
    model = OfficialNamedModel()
    model.transformer.mask_token = nn.Parameter(torch.zeros(1, 1, D))
    model.mim_head = nn.Linear(D, 12)
    trainable = set(apply_trainable_substrings(model, STAGE1_TRAINABLE))
    assert {
        "transformer.mask_token",
        "mim_head.weight",
        "mim_head.bias",
        "relative_position_bias_table",
        "transformer.cls_token",
        "transformer.patch_embed.proj.weight",
        "transformer.norm.weight",
        "transformer.blocks.0.attn.qkv.weight",
        "transformer.blocks.0.attn.q_bias",
        "transformer.blocks.0.norm1.weight",
        "transformer.blocks.0.gamma_2",
        "transformer.blocks.1.mlp_imag.fc2.weight",
        "transformer.blocks.1.norm2_imag.bias",
    } <= trainable
    assert not any(
        "text" in name
        or "mlm" in name
        or "mlp_vl" in name
        or "norm2_vl" in name
        or "token_type" in name
        or "itc" in name
        or "itm" in name
        for name in trainable
    )
    assert unmatched_substrings(model, STAGE1_TRAINABLE) == ["transformer.pos_embed"]
    with pytest.raises(ValueError, match="pos_embed"):
        apply_trainable_substrings(model, STAGE1_TRAINABLE, require_all_match=True)


def test_freeze_report_counts():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    apply_trainable_substrings(model, ["1."])
    assert freeze_report(model) == {
        "trainable_tensors": 2,
        "frozen_tensors": 2,
        "trainable_params": 4,
        "frozen_params": 9,
    }
