"""Loss values of every objective on fixed tiny inputs against references written out by hand (loops/formulae)."""

from __future__ import annotations

import math

import pytest
import torch

from vlmo_pipeline.training.objectives import (
    VL_MLM_WEIGHT,
    MIMTarget,
    PixelRegressionTarget,
    contrastive_loss,
    itc_loss,
    itm_accuracy,
    itm_labels,
    itm_loss,
    mim_loss,
    mlm_loss,
    nlvr2_loss,
    patchify,
    vqa_loss,
)


def _log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(value - top) for value in values))


def _manual_cross_entropy(rows: list[list[float]], targets: list[int]) -> float:
    return sum(_log_sum_exp(row) - row[target] for row, target in zip(rows, targets)) / len(rows)


def _manual_itc(image: list[list[float]], text: list[list[float]], log_scale: float) -> float:
    scale = math.exp(log_scale)
    n = len(image)
    logits = [[scale * sum(a * b for a, b in zip(image[i], text[j])) for j in range(n)] for i in range(n)]
    i2t = _manual_cross_entropy(logits, list(range(n)))
    t2i = _manual_cross_entropy([[logits[i][j] for i in range(n)] for j in range(n)], list(range(n)))
    return (i2t + t2i) / 2


# 3 pairs of 2-d unit vectors at fixed angles.
IMAGE = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
TEXT = [[0.8, 0.6], [0.0, -1.0], [-0.6, 0.8]]


def test_contrastive_loss_matches_manual_log_softmax():
    log_scale = math.log(1 / 0.07)
    loss, logits_per_image, logits_per_text = contrastive_loss(
        torch.tensor(IMAGE), torch.tensor(TEXT), torch.tensor(log_scale)
    )
    assert loss.item() == pytest.approx(_manual_itc(IMAGE, TEXT, log_scale), rel=1e-6)
    assert logits_per_image.shape == (3, 3)
    # logits_per_image[1][0] = exp(s) * (0.6*0.8 + 0.8*0.6)
    assert logits_per_image[1, 0].item() == pytest.approx(math.exp(log_scale) * 0.96, rel=1e-6)
    assert torch.equal(logits_per_text, logits_per_image.t())


def test_contrastive_loss_gradient_reaches_features_and_temperature():
    image = torch.tensor(IMAGE, requires_grad=True)
    text = torch.tensor(TEXT, requires_grad=True)
    scale = torch.tensor(1.0, requires_grad=True)
    contrastive_loss(image, text, scale)[0].backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0 and scale.grad.abs() > 0


def test_contrastive_loss_is_fp32_under_bf16_autocast():
    image, text, scale = torch.tensor(IMAGE), torch.tensor(TEXT), torch.tensor(2.0)
    reference = contrastive_loss(image, text, scale)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = contrastive_loss(image, text, scale)[0]
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, reference)


def test_contrastive_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss(torch.zeros(3, 2), torch.zeros(2, 2), torch.tensor(0.0))


def test_itc_loss_averages_both_branches():
    vl_image = [[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]]
    vl_text = [[0.0, 1.0], [0.6, 0.8], [1.0, 0.0]]
    out = itc_loss(
        torch.tensor(IMAGE),
        torch.tensor(TEXT),
        torch.tensor(vl_image),
        torch.tensor(vl_text),
        torch.tensor(2.0),
        torch.tensor(1.0),
    )
    expected_itc = _manual_itc(IMAGE, TEXT, 2.0)
    expected_vl = _manual_itc(vl_image, vl_text, 1.0)
    assert out["itc_loss"].item() == pytest.approx(expected_itc, rel=1e-6)
    assert out["itc_vl_loss"].item() == pytest.approx(expected_vl, rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * (expected_itc + expected_vl), rel=1e-6)
    assert out["local_offset"] == 0
    # The sampling logits are the modality-expert path (temperature 2.0 → exp(2)).
    assert out["logits_per_image"][0, 0].item() == pytest.approx(math.exp(2.0) * 0.8, rel=1e-6)
    # Expert path: image rows 0 and 1 have argmax text 0 (0.8 and 0.96 > others), row 2 → text 2 (0.8).
    assert out["i2t_accuracy"].item() == pytest.approx(2 / 3)


def test_itm_labels_and_loss_match_manual_cross_entropy():
    assert itm_labels(2).tolist() == [1, 1, 0, 0, 0, 0]
    logits = [[0.1, 2.0], [1.0, -1.0], [3.0, 0.0], [0.5, 0.5], [-2.0, 1.0], [0.0, 4.0]]
    expected = _manual_cross_entropy(logits, [1, 1, 0, 0, 0, 0])
    assert itm_loss(torch.tensor(logits)).item() == pytest.approx(expected, rel=1e-6)
    # Correct rows: 0 (1), 2 (0), 3 (tie → argmax 0, label 0) → wrong rows: 1, 4, 5.
    assert itm_accuracy(torch.tensor(logits)).item() == pytest.approx(3 / 6)


def test_itm_loss_checks_layout():
    with pytest.raises(ValueError, match="3B rows"):
        itm_loss(torch.zeros(4, 2))
    custom = itm_loss(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), labels=torch.tensor([1, 0]))
    assert custom.item() == pytest.approx(math.log(1 + math.exp(-1.0)), rel=1e-6)


def test_mlm_loss_matches_manual_over_labelled_positions_only():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=generator)
    labels = torch.tensor([[-100, 4, -100], [1, -100, 0]])
    rows, targets = [], []
    for b in range(2):
        for position in range(3):
            if labels[b, position] != -100:
                rows.append(logits[b, position].tolist())
                targets.append(int(labels[b, position]))
    assert mlm_loss(logits, labels).item() == pytest.approx(_manual_cross_entropy(rows, targets), rel=1e-6)
    assert VL_MLM_WEIGHT == 0.25


def test_mlm_loss_without_labels_is_zero_with_gradient():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = mlm_loss(logits, torch.full((2, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_patchify_orders_rows_then_columns_then_channels():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = patchify(images, 2)
    assert patches.shape == (2, 6, 12)
    for b in range(2):
        for grid_row in range(2):
            for grid_col in range(3):
                for pixel_row in range(2):
                    for pixel_col in range(2):
                        for channel in range(3):
                            value = images[b, channel, grid_row * 2 + pixel_row, grid_col * 2 + pixel_col]
                            index = (pixel_row * 2 + pixel_col) * 3 + channel
                            assert patches[b, grid_row * 3 + grid_col, index] == value


def test_pixel_regression_target_normalises_each_patch():
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    target = PixelRegressionTarget()
    assert isinstance(target, MIMTarget)
    normalised = target(images, 4)
    assert normalised.shape == (2, 4, 48)
    raw_patch = [images[1, c, 4 + r, q].item() for r in range(4) for q in range(4) for c in range(3)]
    mean = sum(raw_patch) / 48
    variance = sum((value - mean) ** 2 for value in raw_patch) / 47
    expected = [(value - mean) / math.sqrt(variance + 1e-6) for value in raw_patch]
    assert normalised[1, 2].tolist() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert torch.equal(PixelRegressionTarget(normalize_per_patch=False)(images, 4), patchify(images, 4))
    assert target.target_dim(4) == 48


def test_mim_loss_is_mse_over_masked_patches_only():
    generator = torch.Generator().manual_seed(2)
    predictions = torch.randn(2, 4, 3, generator=generator)
    targets = torch.randn(2, 4, 3, generator=generator)
    mask = torch.tensor([[True, False, False, True], [False, False, True, False]])
    squared_errors = []
    for b in range(2):
        for patch in range(4):
            if mask[b, patch]:
                diffs = [(predictions[b, patch, t] - targets[b, patch, t]).item() ** 2 for t in range(3)]
                squared_errors.append(sum(diffs) / 3)
    expected = sum(squared_errors) / len(squared_errors)
    assert mim_loss(predictions, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    # Unmasked patches do not matter at all.
    changed = predictions.clone()
    changed[~mask] = 1000.0
    assert mim_loss(changed, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    assert mim_loss(predictions, targets, torch.zeros_like(mask)).item() == 0.0


def test_vqa_loss_is_mean_bce_times_num_labels():
    logits = [[0.5, -1.0, 2.0, 0.0], [-0.3, 1.5, -2.0, 0.7]]
    targets = [[1.0, 0.0, 0.3, 0.0], [0.0, 0.9, 0.0, 0.6]]
    total = 0.0
    for logit_row, target_row in zip(logits, targets):
        for x, y in zip(logit_row, target_row):
            p = 1 / (1 + math.exp(-x))
            total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    expected = total / 8 * 4
    assert vqa_loss(torch.tensor(logits), torch.tensor(targets)).item() == pytest.approx(expected, rel=1e-6)


def test_nlvr2_loss_matches_manual_cross_entropy():
    logits = [[1.0, -1.0], [0.2, 0.4], [-3.0, 2.0]]
    expected = _manual_cross_entropy(logits, [0, 1, 0])
    assert nlvr2_loss(torch.tensor(logits), torch.tensor([0, 1, 0])).item() == pytest.approx(expected, rel=1e-6)
