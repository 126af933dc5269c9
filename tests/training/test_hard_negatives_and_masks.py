"""ITM hard-negative sampler (the masks are tested in tests/data/test_masking.py)."""

from __future__ import annotations

import math

import pytest
import torch

from vlmo_pipeline.training.objectives import sample_hard_negatives, sample_itm_negatives


def _local_rows(n_global: int, batch: int, offset: int, positive_logit: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, n_global, generator=generator)
    logits[torch.arange(batch), offset + torch.arange(batch)] = positive_logit
    return logits


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("positive_logit", [0.0, 5.0, 1e4])
def test_sampler_never_picks_the_own_pair(seed, positive_logit):
    # 48 local rows at offset 16 in a global batch of 80: 40 calls give ~2,000 draws per direction.
    n_global, batch, offset = 80, 48, 16
    image_rows = _local_rows(n_global, batch, offset, positive_logit, seed)
    text_rows = _local_rows(n_global, batch, offset, positive_logit, seed + 100)
    generator = torch.Generator().manual_seed(seed)
    own = offset + torch.arange(batch)
    for _ in range(40):
        neg_images, neg_texts = sample_hard_negatives(image_rows, text_rows, offset, generator)
        assert neg_images.shape == (batch,) and neg_texts.shape == (batch,)
        assert neg_images.dtype == torch.long
        assert not bool((neg_images == own).any()) and not bool((neg_texts == own).any())
        assert int(neg_images.min()) >= 0 and int(neg_images.max()) < n_global


def test_sampler_follows_the_softmax_of_the_other_columns():
    # Many independent rows in one call: row b is global sample 3+b (own column 3+b, excluded); every other
    # column is -inf except columns 1 and 2. Image rows: logits ln 3 and 0 → text 1 with probability 3/4.
    # Text rows: equal logits → image 1 with probability 1/2.
    draws, offset = 2000, 3
    rows = torch.arange(draws)
    image_rows = torch.full((draws, offset + draws), float("-inf"))
    image_rows[:, 1], image_rows[:, 2] = math.log(3.0), 0.0
    image_rows[rows, offset + rows] = 50.0  # the positive pair: high, but never drawn
    text_rows = torch.full((draws, offset + draws), float("-inf"))
    text_rows[:, 1:3] = 1.0
    text_rows[rows, offset + rows] = 50.0
    neg_images, neg_texts = sample_hard_negatives(image_rows, text_rows, offset, torch.Generator().manual_seed(0))
    assert set(neg_texts.unique().tolist()) == {1, 2} and set(neg_images.unique().tolist()) == {1, 2}
    assert (neg_texts == 1).float().mean().item() == pytest.approx(0.75, abs=0.04)
    assert (neg_images == 1).float().mean().item() == pytest.approx(0.5, abs=0.04)


def test_random_itm_negatives_ignore_the_similarities_but_never_pick_the_own_pair():
    # Each of 8 samples has one peaked other column: "hard" draws it almost always, "random" spreads uniformly
    # over the 7 others. 500 calls give 4,000 draws per mode.
    n_global = 8
    own = torch.arange(n_global)
    peaked = (own + 1) % n_global
    logits = torch.zeros(n_global, n_global)
    logits[own, peaked] = 30.0
    logits[own, own] = 50.0  # the positive pair: highest, never drawn
    generator = torch.Generator().manual_seed(0)

    def draws(mode: str) -> torch.Tensor:
        return torch.stack(
            [torch.stack(sample_itm_negatives(logits, logits, 0, mode=mode, generator=generator)) for _ in range(500)]
        )

    hard, random_ = draws("hard"), draws("random")
    assert not torch.any(hard == own) and not torch.any(random_ == own)
    assert (hard == peaked).float().mean().item() > 0.99
    assert (random_ == peaked).float().mean().item() == pytest.approx(1 / 7, abs=0.03)
    assert set(random_.unique().tolist()) == set(range(n_global))
    with pytest.raises(ValueError, match="'hard' or 'random'"):
        sample_itm_negatives(logits, logits, 0, mode="easy")


def test_sampler_falls_back_to_uniform_for_unusable_rows():
    generator = torch.Generator().manual_seed(0)
    n_global = 4
    # Row 0: every other column -inf; row 1: NaN logits. Both must still get a valid, non-own negative.
    image_rows = torch.tensor([[0.0, float("-inf"), float("-inf"), float("-inf")], [float("nan")] * 4])
    text_rows = image_rows.clone()
    seen = set()
    for _ in range(200):
        neg_images, neg_texts = sample_hard_negatives(image_rows, text_rows, 0, generator)
        for index, own in zip(neg_texts.tolist() + neg_images.tolist(), [0, 1, 0, 1]):
            assert index != own and 0 <= index < n_global
        seen.add(neg_texts[0].item())
    assert seen == {1, 2, 3}  # uniform over the others


def test_sampler_rejects_degenerate_inputs():
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_hard_negatives(torch.zeros(1, 1), torch.zeros(1, 1), 0)
    with pytest.raises(ValueError, match="local_offset"):
        sample_hard_negatives(torch.zeros(2, 4), torch.zeros(2, 4), 3)
    with pytest.raises(ValueError, match="same shape"):
        sample_hard_negatives(torch.zeros(2, 4), torch.zeros(2, 5), 0)


def test_sampler_makes_no_host_sync(monkeypatch):
    """Vectorised: no Tensor→Python conversion happens inside the sampler."""
    image_rows = _local_rows(6, 3, 3, 2.0, 0)
    text_rows = _local_rows(6, 3, 3, 2.0, 1)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("host synchronisation inside sample_hard_negatives")

    for method in ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    neg_images, neg_texts = sample_hard_negatives(image_rows, text_rows, 3)
    monkeypatch.undo()
    assert neg_images.shape == (3,) and neg_texts.shape == (3,)
