"""BEiT-style blockwise image masks (data/masking.py): exact budget, blocky shapes, reproducible draws, and the
collator that draws them per batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmo_pipeline.data.masking import MIMCollator, batch_blockwise_masks, blockwise_patch_mask


def _masked_neighbour_share(mask_2d: np.ndarray) -> float:
    """Share of masked patches with at least two masked 4-neighbours (≈ 1 for blocks, low for scatter)."""
    padded = np.pad(mask_2d, 1)
    neighbours = padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return float(((neighbours >= 2) & mask_2d).sum() / max(1, mask_2d.sum()))


@pytest.mark.parametrize(
    "grid,budget,min_patches",
    [((14, 14), 75, 16), ((8, 8), 26, 4), ((4, 4), 6, 4), ((3, 5), 6, 4), ((14, 14), 0, 16), ((2, 2), 4, 4)],
)
def test_blockwise_mask_hits_the_budget_exactly(grid, budget, min_patches):
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        mask = blockwise_patch_mask(*grid, budget, min_num_patches=min_patches, generator=generator)
        assert mask.dtype == torch.bool and mask.shape == (grid[0] * grid[1],)
        assert int(mask.sum()) == budget


def test_blockwise_masks_are_blocky_not_scattered():
    generator = torch.Generator().manual_seed(3)
    block_shares = [
        _masked_neighbour_share(blockwise_patch_mask(14, 14, 75, 16, generator=generator).view(14, 14).numpy())
        for _ in range(20)
    ]
    rng = np.random.default_rng(0)
    scattered = np.zeros(196, dtype=bool)
    scattered[rng.choice(196, 75, replace=False)] = True
    assert np.mean(block_shares) > 0.8
    assert _masked_neighbour_share(scattered.reshape(14, 14)) < 0.6


def test_blockwise_masks_are_reproducible_and_vary():
    first = batch_blockwise_masks(4, 6, 6, 0.4, generator=torch.Generator().manual_seed(7))
    again = batch_blockwise_masks(4, 6, 6, 0.4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert first.shape == (4, 36) and first.sum(dim=1).tolist() == [14] * 4
    assert len({tuple(row.tolist()) for row in first}) > 1


def test_blockwise_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_masking_patches"):
        blockwise_patch_mask(4, 4, 17)
    with pytest.raises(ValueError, match="mask_ratio"):
        batch_blockwise_masks(2, 4, 4, mask_ratio=1.5)


def test_mim_collator_draws_reproducible_masks_from_its_own_seed():
    items = [{"image": torch.zeros(3, 8, 8), "index": i} for i in range(3)]
    first, again = MIMCollator(4, 0.5, 2, 3.0, seed=5), MIMCollator(4, 0.5, 2, 3.0, seed=5)
    batches = [first(items), first(items)]
    assert batches[0]["patch_mask"].shape == (3, 16) and batches[0]["patch_mask"].sum(dim=1).tolist() == [8, 8, 8]
    assert torch.equal(again(items)["patch_mask"], batches[0]["patch_mask"])  # same seed, same first batch
    assert not torch.equal(batches[0]["patch_mask"], batches[1]["patch_mask"])  # the generator moves on
    assert batches[0]["index"].tolist() == [0, 1, 2]  # everything else collated as usual
