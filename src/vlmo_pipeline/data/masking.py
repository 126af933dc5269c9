"""BEiT-style blockwise image masks for stage-1 masked image modeling, drawn with the batches (spec §4.4).

The masks are data: they are sampled on the CPU by the collator (:class:`MIMCollator`), from a private seeded
generator per DataLoader worker, so a resumed run draws the same masks (``training/sampling.py`` saves the
generator's state) and the model step only reads ``batch["patch_mask"]``. The losses are in
``training/objectives.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vlmo_pipeline.data.collate import collate

__all__ = ["blockwise_patch_mask", "batch_blockwise_masks", "MIMCollator"]


def _rng_from(generator: torch.Generator | None) -> random.Random:
    """A Python RNG seeded from ``generator`` (or torch's global RNG), so masks follow torch seeding."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return random.Random(seed)


def _place_one_block(
    mask: np.ndarray, budget_left: int, min_num_patches: int, max_aspect: float, rng: random.Random
) -> int:
    """Try (up to 10 times) to mask one random rectangle adding 1…budget_left new patches; return how many."""
    grid_h, grid_w = mask.shape
    log_aspect_range = (math.log(1.0 / max_aspect), math.log(max_aspect))
    for _attempt in range(10):
        target_area = rng.uniform(min(min_num_patches, budget_left), budget_left)
        aspect = math.exp(rng.uniform(*log_aspect_range))
        block_h = int(round(math.sqrt(target_area * aspect)))
        block_w = int(round(math.sqrt(target_area / aspect)))
        # BEiT requires the block to be strictly smaller than the grid; "<=" lets tiny grids (demo scale)
        # still use full-width/-height blocks.
        if not (1 <= block_h <= grid_h and 1 <= block_w <= grid_w):
            continue
        top = rng.randint(0, grid_h - block_h)
        left = rng.randint(0, grid_w - block_w)
        window = mask[top : top + block_h, left : left + block_w]
        newly_masked = block_h * block_w - int(window.sum())
        if 0 < newly_masked <= budget_left:
            window[...] = True
            return newly_masked
    return 0


def blockwise_patch_mask(
    grid_h: int,
    grid_w: int,
    num_masking_patches: int,
    min_num_patches: int = 4,
    max_aspect: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """BEiT-style blockwise mask over a ``grid_h × grid_w`` patch grid, flattened row-major to (grid_h·grid_w,).

    Rectangles with a random area in ``[min_num_patches, remaining budget]`` and a log-uniform aspect ratio in
    ``[1/max_aspect, max_aspect]`` are placed at random positions until ``num_masking_patches`` patches are
    masked; a rectangle is only accepted if it adds between 1 and the remaining budget new patches, so the
    count never exceeds the budget. When ten consecutive rectangles fail to fit (rare; BEiT then stops short)
    the few missing patches are taken uniformly from the unmasked ones, so the mask has *exactly*
    ``num_masking_patches`` patches — useful on the tiny demo grids where big rectangles seldom fit.
    """
    n_patches = grid_h * grid_w
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"patch grid must be at least 1x1; got {grid_h}x{grid_w}")
    if not 0 <= num_masking_patches <= n_patches:
        raise ValueError(f"num_masking_patches={num_masking_patches} must be in [0, {n_patches}]")
    if min_num_patches < 1 or max_aspect < 1.0:
        raise ValueError(f"need min_num_patches >= 1 and max_aspect >= 1; got {min_num_patches}, {max_aspect}")
    rng = _rng_from(generator)
    mask = np.zeros((grid_h, grid_w), dtype=bool)
    n_masked = 0
    while n_masked < num_masking_patches:
        added = _place_one_block(mask, num_masking_patches - n_masked, min_num_patches, max_aspect, rng)
        if added == 0:
            break
        n_masked += added
    if n_masked < num_masking_patches:
        free = np.flatnonzero(~mask.reshape(-1))
        chosen = rng.sample(free.tolist(), num_masking_patches - n_masked)
        mask.reshape(-1)[chosen] = True
    return torch.from_numpy(mask.reshape(-1).copy())


def batch_blockwise_masks(
    batch: int,
    grid_h: int,
    grid_w: int,
    mask_ratio: float = 0.4,
    generator: torch.Generator | None = None,
    min_num_patches: int = 4,
    max_aspect: float = 3.0,
) -> torch.Tensor:
    """(batch, grid_h·grid_w) bool masks, each with ``round(mask_ratio · grid_h · grid_w)`` masked patches.

    BEiT masks 75 of 196 patches (≈ 0.4). Runs on the CPU (call it in the collator / data module).
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1]; got {mask_ratio}")
    budget = int(round(mask_ratio * grid_h * grid_w))
    masks = [blockwise_patch_mask(grid_h, grid_w, budget, min_num_patches, max_aspect, generator) for _ in range(batch)]
    if not masks:
        return torch.zeros(0, grid_h * grid_w, dtype=torch.bool)
    return torch.stack(masks)


class MIMCollator:
    """``collate`` plus ``patch_mask`` (B, grid²) bool: BEiT blockwise masks drawn from a private seeded generator
    (``seed`` + the DataLoader worker's id)."""

    def __init__(self, grid_size: int, mask_ratio: float, min_num_patches: int, max_aspect: float, seed: int) -> None:
        self.grid_size = grid_size
        self.mask_ratio = mask_ratio
        self.min_num_patches = min_num_patches
        self.max_aspect = max_aspect
        self.seed = seed
        self._generator: torch.Generator | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = None  # every DataLoader worker seeds its own
        return state

    def _rng(self) -> torch.Generator:
        if self._generator is None:
            worker = torch.utils.data.get_worker_info()
            self._generator = torch.Generator().manual_seed(self.seed + (worker.id if worker else 0))
        return self._generator

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(items)
        batch["patch_mask"] = batch_blockwise_masks(
            len(items),
            self.grid_size,
            self.grid_size,
            mask_ratio=self.mask_ratio,
            generator=self._rng(),
            min_num_patches=self.min_num_patches,
            max_aspect=self.max_aspect,
        )
        return batch
