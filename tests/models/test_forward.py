"""Forward modes on tiny models: SDPA vs reference attention, fused split, padding, heads, autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlmo_pipeline.models import FusionOutput, create_model

VOCAB = 120
ALL_TASKS = ("itc", "itm", "mlm", "vqa", "nlvr2", "mim")


def tiny(**overrides):
    torch.manual_seed(0)
    model = create_model("vlmo_tiny", vocab_size=VOCAB, vqa_num_labels=7, **overrides)
    with torch.no_grad():  # the table starts at zero; make the bias matter
        if model.relative_position_bias_table is not None:
            model.relative_position_bias_table.normal_(std=0.5)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny(loss_names=ALL_TASKS)


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (3, 40), generator=generator)
    masks = torch.ones(3, 40, dtype=torch.long)
    masks[0, 9:] = 0  # padded texts
    masks[1, 27:] = 0
    ids[masks == 0] = 0
    images = torch.randn(3, 3, 64, 64, generator=generator)
    return ids, masks, images


def all_outputs(model, ids, masks, images):
    fused = model.fuse(ids, masks, images)
    text = model.infer_text(ids, masks)
    image = model.infer_image(images)
    return {
        "fused.text": fused.text_feats,
        "fused.image": fused.image_feats,
        "fused.cls": fused.cls_feats,
        "text.feats": text.feats,
        "text.cls": text.cls_feats,
        "text.vlffn": text.cls_vlffn_feats,
        "image.feats": image.feats,
        "image.cls": image.cls_feats,
        "image.vlffn": image.cls_vlffn_feats,
    }


def test_sdpa_matches_reference_path(model, batch):
    with torch.no_grad():
        model.set_attention_impl("sdpa")
        fast = all_outputs(model, *batch)
        model.set_attention_impl("reference")
        reference = all_outputs(model, *batch)
        model.set_attention_impl("sdpa")
    for name in fast:
        assert torch.allclose(fast[name], reference[name], atol=1e-5, rtol=0), name


def test_output_shapes_and_normalisation(model, batch):
    ids, masks, images = batch
    with torch.no_grad():
        fused = model.fuse(ids, masks, images)
        assert isinstance(fused, FusionOutput)
        assert fused.text_feats.shape == (3, 40, 128) and fused.image_feats.shape == (3, 17, 128)
        assert fused.cls_feats.shape == (3, 128) and fused.cls_feats.abs().max() <= 1  # tanh pooler
        for embedding in (
            model.encode_image(images),
            model.encode_text(ids, masks),
            model.encode_image_vl(images),
            model.encode_text_vl(ids, masks),
        ):
            assert embedding.shape == (3, 128)
            assert torch.allclose(embedding.norm(dim=-1), torch.ones(3), atol=1e-5)
        assert model.itm_logits(ids, masks, images).shape == (3, 2)
        assert model.mlm_logits(ids, masks, images).shape == (3, 40, VOCAB)
        assert model.mlm_logits(ids, masks).shape == (3, 40, VOCAB)
        assert model.vqa_logits(ids, masks, images).shape == (3, 7)
        assert model.nlvr2_logits(ids, masks, images, images.flip(0)).shape == (3, 2)
        similarity = model.similarity(images, ids, masks)
        assert torch.allclose(similarity, model.encode_image(images) @ model.encode_text(ids, masks).T)


def test_encoders_follow_the_official_definitions(model, batch):
    """encode_text = normalize(itc_text_proj(norm(text path)[:,0])); the VL branch restarts below the VL blocks."""
    ids, masks, _ = batch
    with torch.no_grad():
        x = model.embed_text(ids)
        biases = model.relative_position_biases(model.text_relative_position_index)
        hidden = x
        for i, block in enumerate(model.transformer.blocks):
            hidden = block(hidden, "text", masks, biases[i])
            if i == 1:  # vlffn_start - 1
                branch = hidden
        for i in (2, 3):
            branch = model.transformer.blocks[i](branch, "vl", masks, biases[i])
        expected = F.normalize(model.itc_text_proj(model.transformer.norm(hidden)[:, 0]), dim=-1)
        expected_vl = F.normalize(model.itc_vl_text_proj(model.transformer.norm(branch)[:, 0]), dim=-1)
        assert torch.allclose(model.encode_text(ids, masks), expected, atol=1e-6)
        assert torch.allclose(model.encode_text_vl(ids, masks), expected_vl, atol=1e-6)
        assert torch.allclose(model.encode_text_mlm(ids, masks), model.transformer.norm(hidden), atol=1e-6)


def test_fused_split_routes_text_and_image_experts(model, batch):
    """A block without VL-FFN in 'vl' mode: first max_text_len tokens → L-FFN, rest → V-FFN (spec §1.2)."""
    ids, masks, images = batch
    block = model.transformer.blocks[0]
    assert not block.has_vlffn
    torch.manual_seed(3)
    x = torch.randn(3, 40 + 17, 128)
    bias = torch.randn(4, 57, 57)
    full_masks = torch.cat([masks, torch.ones(3, 17, dtype=torch.long)], dim=1)
    with torch.no_grad():
        out = block(x, "vl", full_masks, bias, text_len=40)
        h = x + block.gamma_1 * block.attn(block.norm1(x), full_masks, bias)
        text = h[:, :40] + block.gamma_2 * block.mlp_text(block.norm2_text(h[:, :40]))
        image = h[:, 40:] + block.gamma_2 * block.mlp_imag(block.norm2_imag(h[:, 40:]))
        assert torch.allclose(out, torch.cat([text, image], dim=1), atol=1e-6)
        # The wrong routing would differ: experts are distinct.
        swapped = h[:, :40] + block.gamma_2 * block.mlp_imag(block.norm2_imag(h[:, :40]))
        assert not torch.allclose(out[:, :40], swapped, atol=1e-3)
        vl_block = model.transformer.blocks[3]
        vl_out = vl_block(x, "vl", full_masks, bias)
        h = x + vl_block.gamma_1 * vl_block.attn(vl_block.norm1(x), full_masks, bias)
        assert torch.allclose(vl_out, h + vl_block.gamma_2 * vl_block.mlp_vl(vl_block.norm2_vl(h)), atol=1e-6)


def test_padding_is_invisible_to_real_tokens(model, batch):
    """Padded keys are masked: a short text padded to 40 gives the same states as the unpadded text."""
    ids, masks, images = batch
    length = int(masks[0].sum())
    with torch.no_grad():
        padded = model.fuse(ids[:1], masks[:1], images[:1])
        short = model.fuse(ids[:1, :length], masks[:1, :length], images[:1])
        assert torch.allclose(padded.text_feats[:, :length], short.text_feats, atol=1e-5)
        assert torch.allclose(padded.image_feats, short.image_feats, atol=1e-5)
        assert torch.allclose(
            model.encode_text(ids[:1], masks[:1]), model.encode_text(ids[:1, :length], masks[:1, :length]), atol=1e-5
        )


def test_nlvr2_uses_third_token_type(model, batch):
    ids, masks, images = batch
    assert model.token_type_embeddings.weight.shape[0] == 3
    with torch.no_grad():
        first = model.fuse(ids, masks, images, image_token_type_idx=1).cls_feats
        second = model.fuse(ids, masks, images, image_token_type_idx=2).cls_feats
        model_logits = model.nlvr2_logits(ids, masks, images, images)
        assert torch.allclose(model_logits, model.nlvr2_classifier(torch.cat([first, second], -1)), atol=1e-6)


def test_masked_image_tokens(model, batch):
    _, _, images = batch
    patch_mask = torch.zeros(3, 16, dtype=torch.bool)
    patch_mask[:, :5] = True
    with torch.no_grad():
        unmasked = model.encode_image_tokens(images)
        assert torch.allclose(model.encode_image_tokens(images, torch.zeros_like(patch_mask)), unmasked)
        assert torch.allclose(model.infer_image(images).feats, unmasked, atol=1e-6)
        masked = model.encode_image_tokens(images, patch_mask)
        # Pixels under masked patches no longer matter (patch 0 = top-left 16x16 corner).
        changed = images.clone()
        changed[:, :, :16, :16] = 5.0
        assert torch.allclose(model.encode_image_tokens(changed, patch_mask), masked, atol=1e-6)
        assert not torch.allclose(model.encode_image_tokens(changed), unmasked, atol=1e-3)
    with pytest.raises(RuntimeError, match="mask_token"):
        tiny().encode_image_tokens(images, patch_mask)


def test_base_plus_style_model_runs_and_paths_agree(batch):
    """No rel-pos table, no layer scale, absolute positions (Base-plus family) at tiny size."""
    ids, masks, images = batch
    model = tiny(layer_scale_init_values=None, use_relative_position_bias=False, use_abs_pos_emb=True)
    with torch.no_grad():
        fast = all_outputs(model, ids, masks, images)
        model.set_attention_impl("reference")
        reference = all_outputs(model, ids, masks, images)
    for name in fast:
        assert torch.allclose(fast[name], reference[name], atol=1e-5), name


def test_missing_heads_and_bad_inputs_raise(batch):
    ids, masks, images = batch
    model = tiny(loss_names=("vqa",))
    with pytest.raises(RuntimeError, match="itc or irtr"):
        model.encode_image(images)
    with pytest.raises(RuntimeError, match="itm_score"):
        model.itm_logits(ids, masks, images)
    with pytest.raises(ValueError, match="exceeds max_text_len"):
        model.fuse(torch.zeros(1, 41, dtype=torch.long), torch.ones(1, 41, dtype=torch.long), images[:1])
    with pytest.raises(ValueError, match="expected images of shape"):
        model.fuse(ids, masks, torch.randn(3, 3, 32, 32))


def test_set_tasks_reuses_backbone(batch):
    ids, masks, images = batch
    model = tiny()
    with torch.no_grad():
        before = model.encode_image(images)
        model.set_tasks(("irtr", "nlvr2"))
        assert model.itm_score is None and model.mlm_score is None and model.itc_vl_text_proj is None
        assert torch.allclose(model.encode_image(images), before)  # itc_image_proj kept
        rows = model.token_type_embeddings.weight
        assert rows.shape[0] == 3 and torch.equal(rows[2], rows[1])
        assert model.nlvr2_logits(ids, masks, images, images).shape == (3, 2)
        model.set_tasks(("textmlm",))
        assert not any(block.has_vlffn for block in model.transformer.blocks)
        assert "transformer.blocks.3.mlp_vl.fc1.weight" not in model.state_dict()
        model.set_tasks(("itc", "itm", "mlm"))
        assert [block.has_vlffn for block in model.transformer.blocks] == [False, False, True, True]
        assert model.token_type_embeddings.weight.shape[0] == 2
        assert set(model.state_dict()) == set(tiny().state_dict())


def test_drop_path_only_in_training():
    model = tiny(drop_path_rate=0.5)
    ids, masks = torch.randint(5, VOCAB, (4, 40)), torch.ones(4, 40, dtype=torch.long)
    model.train()
    torch.manual_seed(0)
    a = model.encode_text_mlm(ids, masks)
    torch.manual_seed(1)
    b = model.encode_text_mlm(ids, masks)
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.allclose(model.encode_text_mlm(ids, masks), model.encode_text_mlm(ids, masks))


def test_backward_reaches_all_expert_kinds(batch):
    ids, masks, images = batch
    model = tiny(loss_names=ALL_TASKS).train()
    loss = (
        model.fuse(ids, masks, images).cls_feats.sum()
        + model.encode_image_vl(images).sum()
        + model.encode_text(ids, masks).sum()
    )
    loss.backward()
    blocks = model.transformer.blocks
    for grad in (
        blocks[0].mlp_text.fc1.weight.grad,
        blocks[0].mlp_imag.fc1.weight.grad,
        blocks[3].mlp_vl.fc1.weight.grad,
        model.relative_position_bias_table.grad,
    ):
        assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_bf16_autocast_cpu_all_modes(model, batch, impl):
    ids, masks, images = batch
    model.set_attention_impl(impl)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = all_outputs(model, ids, masks, images)
            outputs["vqa"] = model.vqa_logits(ids, masks, images)
    finally:
        model.set_attention_impl("sdpa")
    reference = all_outputs(model, ids, masks, images)
    for name, value in outputs.items():
        assert torch.isfinite(value).all(), name
        if name in reference:
            assert torch.allclose(value.float(), reference[name], atol=0.15), name


@pytest.mark.slow
def test_torch_compile_matches_eager(batch):
    ids, masks, images = batch
    model = tiny(loss_names=("itc", "itm", "mlm"))
    compiled = torch.compile(model)
    with torch.no_grad():
        eager = model.fuse(ids, masks, images)
        fast = compiled(ids, masks, images)
    assert torch.allclose(fast.cls_feats, eager.cls_feats, atol=1e-4)
    assert torch.allclose(fast.text_feats, eager.text_feats, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_sdpa_matches_fp32(batch):
    ids, masks, images = (t.cuda() for t in batch)
    model = tiny(loss_names=("itc", "itm", "mlm")).cuda()
    with torch.no_grad():
        reference = model.fuse(ids, masks, images).cls_feats
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast = model.fuse(ids, masks, images).cls_feats
    assert torch.allclose(fast.float(), reference, atol=5e-2)


def test_activation_checkpointing_gives_the_same_losses_and_gradients(batch):
    """Training mode with drop-path and dropout on: recomputed blocks replay their random state, so the fused
    and unimodal outputs and every gradient equal those of the plain pass; fewer activations are kept."""
    ids, masks, images = batch

    def step(checkpointing: bool):
        model = tiny(loss_names=("itc", "itm", "mlm"), drop_path_rate=0.2).train()
        model.set_activation_checkpointing(checkpointing)
        torch.manual_seed(7)
        fused = model.fuse(ids, masks, images)
        text, image = model.infer_text(ids, masks), model.infer_image(images)
        loss = fused.cls_feats.square().mean() + (text.cls_feats @ image.cls_feats.T).mean()
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    def saved_tensor_bytes(checkpointing: bool) -> int:
        model = tiny(drop_path_rate=0.2).train().set_activation_checkpointing(checkpointing)
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model.fuse(ids, masks, images).cls_feats.sum()
        return total

    plain_loss, plain_grads = step(False)
    ckpt_loss, ckpt_grads = step(True)
    assert torch.equal(plain_loss, ckpt_loss)
    assert plain_grads.keys() == ckpt_grads.keys() and len(plain_grads) > 50
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=0, atol=1e-6, msg=name)
    assert saved_tensor_bytes(True) < saved_tensor_bytes(False) / 3
