"""Batch collation and whole-word masking for MLM (spec §4.3).

``collate`` stacks per-item tensors into batch tensors, turns plain ints/floats into 1-D tensors, and lists
everything else (strings, id lists). ``WholeWordMaskCollator`` additionally produces the MLM inputs the way the
official collator (transformers 4.8.1 ``DataCollatorForWholeWordMask``, called from ViLT's ``collate``) does:

1. Candidate "words" are WordPiece groups (a token plus its ``##`` continuations); only [CLS] and [SEP] are
   skipped, so each [PAD] position is a one-token candidate word as well.
2. Words are visited in a uniformly random order and taken greedily while the running total stays within the
   budget ``max(1, round(0.15 × L))`` where L is the **padded** length (6 of 40, 29 of 196); a word that would
   overshoot is skipped, later shorter words may still fit.
3. Chosen positions holding special tokens ([CLS], [SEP], [PAD], and — as BERT's special-token mask has them —
   [UNK] and [MASK]) are dropped afterwards, so short captions get fewer, possibly zero, masked tokens.
4. Of the remaining positions 80 % become [MASK], 10 % a uniformly random id in [0, vocab_size), 10 % stay.

``budget_over_padded_length=False`` is the better-behaved alternative: PAD is no candidate and the budget counts
the real (non-PAD) tokens, so every caption gets ~15 % of its own length masked.

Everything is vectorised over the batch; the only Python loop is over the (≤ L) ranks of the greedy selection.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

IGNORE_INDEX = -100


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge a list of item dicts into a batch dict.

    Tensors of equal shape are stacked (new leading batch dim); Python ints/floats become 1-D tensors
    (long/float); anything else (strings, lists, None) is kept as a list. All items must have the same keys.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    keys = list(batch[0].keys())
    for position, item in enumerate(batch[1:], start=1):
        if set(item.keys()) != set(keys):
            raise ValueError(f"item {position} has keys {sorted(item)} but item 0 has {sorted(keys)}")
    merged: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in batch]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(value.shape) for value in values}
            if len(shapes) != 1:
                raise ValueError(f"cannot stack {key!r}: items have different shapes {sorted(shapes)}")
            merged[key] = torch.stack(values)
        elif all(type(value) is int for value in values):  # bool is excluded on purpose
            merged[key] = torch.tensor(values, dtype=torch.long)
        elif all(type(value) in (int, float) for value in values):
            merged[key] = torch.tensor(values, dtype=torch.float32)
        else:
            merged[key] = values
    return merged


class WholeWordMaskCollator:
    """``collate`` plus whole-word-masked MLM inputs ``{prefix}_ids_mlm`` / ``{prefix}_labels_mlm``.

    Args:
        tokenizer: a ``VLMoTokenizer`` (gives the ids and the ``##`` table); or pass the ids as keywords.
        vocab_size, mask_id, cls_id, sep_id, pad_id, unk_id: token ids when no tokenizer is given
            (``unk_id`` optional).
        mlm_probability: share of the budget length to mask (0.15).
        budget_over_padded_length: True follows the official quirk (see module docstring).
        seed: None draws from torch's global RNG (which DataLoader seeds differently per worker). An int gives a
            private ``torch.Generator`` seeded with ``seed`` (+ the DataLoader worker id inside a worker) and
            advanced by every call, so a run's sequence of masks is reproducible.
        prefix: key prefix of the text fields (``text`` → ``text_ids``, ``word_ids``/``text_word_ids``).

    Word groups come from the batch's ``word_ids`` (from ``VLMoTokenizer.encode``) when present, otherwise from
    the tokenizer's ``##`` table applied to the ids.
    """

    def __init__(
        self,
        tokenizer: Any | None = None,
        *,
        vocab_size: int | None = None,
        mask_id: int | None = None,
        cls_id: int | None = None,
        sep_id: int | None = None,
        pad_id: int | None = None,
        unk_id: int | None = None,
        mlm_probability: float = 0.15,
        budget_over_padded_length: bool = True,
        seed: int | None = None,
        prefix: str = "text",
    ) -> None:
        if tokenizer is not None:
            vocab_size, mask_id, cls_id = tokenizer.vocab_size, tokenizer.mask_id, tokenizer.cls_id
            sep_id, pad_id, unk_id = tokenizer.sep_id, tokenizer.pad_id, tokenizer.unk_id
            self.continuation = tokenizer.continuation_table()
        else:
            self.continuation = None
        missing = [
            name
            for name, value in {
                "vocab_size": vocab_size,
                "mask_id": mask_id,
                "cls_id": cls_id,
                "sep_id": sep_id,
                "pad_id": pad_id,
            }.items()
            if value is None
        ]
        if missing:
            raise ValueError(f"WholeWordMaskCollator needs a tokenizer or the ids {missing}")
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        self.vocab_size = int(vocab_size)
        self.mask_id, self.cls_id, self.sep_id, self.pad_id = int(mask_id), int(cls_id), int(sep_id), int(pad_id)
        self.unk_id = None if unk_id is None else int(unk_id)
        self.mlm_probability = float(mlm_probability)
        self.budget_over_padded_length = budget_over_padded_length
        self.seed = seed
        self.prefix = prefix
        self._generator: torch.Generator | None = None
        self._generator_pid: int | None = None

    # -------------------------------------------------------------------------------------------- rng
    def _default_generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator_pid != os.getpid():
            worker = torch.utils.data.get_worker_info()
            generator = torch.Generator()
            generator.manual_seed(self.seed + (worker.id if worker is not None else 0))
            self._generator, self._generator_pid = generator, os.getpid()
        return self._generator

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"], state["_generator_pid"] = None, None  # each process seeds its own
        return state

    # ------------------------------------------------------------------------------------------ masking
    def _word_groups(self, text_ids: torch.Tensor, word_ids: torch.Tensor | None) -> torch.Tensor:
        """Bool (B, L): True where a token continues the word of the token before it."""
        continues = torch.zeros_like(text_ids, dtype=torch.bool)
        if word_ids is not None:
            continues[:, 1:] = (word_ids[:, 1:] >= 0) & (word_ids[:, 1:] == word_ids[:, :-1])
        elif self.continuation is not None:
            continues[:, 1:] = self.continuation[text_ids[:, 1:]]
        else:
            raise ValueError("whole-word masking needs word_ids in the batch or a tokenizer (for the ## table)")
        return continues

    def mask(
        self,
        text_ids: torch.Tensor,
        word_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-word-mask a (B, L) batch of ids; returns ``(ids_mlm, labels_mlm)`` (labels -100 where unmasked).

        ``generator`` overrides the collator's own random source for this call.
        """
        if text_ids.dim() != 2:
            raise ValueError(f"text_ids must be (B, L), got shape {tuple(text_ids.shape)}")
        text_ids = text_ids.long()
        generator = generator if generator is not None else self._default_generator()
        batch, length = text_ids.shape
        positions = torch.arange(length).expand(batch, length)

        is_pad = text_ids == self.pad_id
        candidate = (text_ids != self.cls_id) & (text_ids != self.sep_id)
        if not self.budget_over_padded_length:
            candidate &= ~is_pad
        continues = self._word_groups(text_ids, word_ids) & candidate
        continues[:, 1:] &= candidate[:, :-1]  # a continuation needs a candidate word to continue
        word_start = candidate & ~continues

        # Group id of a token = position of its word's first token (cummax carries it over continuations).
        group = torch.where(word_start, positions, torch.full_like(positions, -1)).cummax(dim=1).values
        in_group = candidate & (group >= 0)
        group = group.clamp(min=0)
        word_length = torch.zeros(batch, length, dtype=torch.long).scatter_add_(1, group, in_group.long())
        word_length = word_length * word_start  # only word starts carry a length

        if self.budget_over_padded_length:
            budget_base = torch.full((batch,), float(length), dtype=torch.float64)
        else:
            budget_base = (~is_pad).sum(dim=1).to(torch.float64)
        budget = torch.round(budget_base * self.mlm_probability).long().clamp(min=1)

        # Random visiting order of the words (non-starts sorted to the end), then greedy fill within budget.
        priority = torch.rand(batch, length, generator=generator)
        priority = torch.where(word_start, priority, torch.full_like(priority, 2.0))
        order = priority.argsort(dim=1)
        length_in_order = word_length.gather(1, order)
        taken_in_order = torch.zeros(batch, length, dtype=torch.bool)
        total = torch.zeros(batch, dtype=torch.long)
        max_words = int(word_start.sum(dim=1).max()) if batch else 0
        for rank in range(max_words):
            candidate_length = length_in_order[:, rank]
            fits = (candidate_length > 0) & (total + candidate_length <= budget)
            taken_in_order[:, rank] = fits
            total += candidate_length * fits
        chosen_start = torch.zeros(batch, length, dtype=torch.bool).scatter_(1, order, taken_in_order)
        masked = chosen_start.gather(1, group) & in_group

        never_predicted = is_pad | (text_ids == self.cls_id) | (text_ids == self.sep_id) | (text_ids == self.mask_id)
        if self.unk_id is not None:
            never_predicted |= text_ids == self.unk_id
        masked &= ~never_predicted

        labels = torch.where(masked, text_ids, torch.full_like(text_ids, IGNORE_INDEX))
        draw = torch.rand(batch, length, generator=generator)
        to_mask_token = masked & (draw < 0.8)
        to_random = masked & (draw >= 0.8) & (draw < 0.9)
        random_ids = torch.randint(0, self.vocab_size, (batch, length), generator=generator)
        ids_mlm = torch.where(to_mask_token, torch.full_like(text_ids, self.mask_id), text_ids)
        ids_mlm = torch.where(to_random, random_ids, ids_mlm)
        return ids_mlm, labels

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """``collate(batch)`` plus ``{prefix}_ids_mlm``, ``{prefix}_labels_mlm`` and ``{prefix}_labels`` (all -100)."""
        merged = collate(batch)
        ids_key = f"{self.prefix}_ids"
        if ids_key not in merged:
            raise KeyError(f"batch has no {ids_key!r} to mask (keys: {sorted(merged)})")
        word_ids = merged.get("word_ids" if self.prefix == "text" else f"{self.prefix}_word_ids")
        ids_mlm, labels_mlm = self.mask(merged[ids_key], word_ids)
        merged[f"{self.prefix}_ids_mlm"] = ids_mlm
        merged[f"{self.prefix}_labels_mlm"] = labels_mlm
        merged[f"{self.prefix}_labels"] = torch.full_like(merged[ids_key], IGNORE_INDEX)
        return merged
