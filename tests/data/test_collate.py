"""collate() and whole-word masking (spec §4.3)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from vlmo_pipeline.data.collate import IGNORE_INDEX, WholeWordMaskCollator, collate
from vlmo_pipeline.models.tokenizer import VLMoTokenizer

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
BERT_VOCAB = SHARED / "datasamples" / "bert-base-uncased" / "vocab.txt"

# Synthetic ids for tests that need no tokenizer: pad 0, unk 1, cls 2, sep 3, mask 4, words from 10.
PAD, UNK, CLS, SEP, MASK, VOCAB = 0, 1, 2, 3, 4, 50


def ids_collator(**kwargs) -> WholeWordMaskCollator:
    return WholeWordMaskCollator(
        vocab_size=VOCAB, mask_id=MASK, cls_id=CLS, sep_id=SEP, pad_id=PAD, unk_id=UNK, **kwargs
    )


def full_batch(batch: int, length: int, words: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[CLS] w... [SEP] [PAD]...`` where word k spans words[k] tokens; returns (ids, word_ids)."""
    ids, word_ids = [CLS], [-1]
    for word_index, size in enumerate(words):
        ids += [10 + (word_index * 3 + piece) % 40 for piece in range(size)]
        word_ids += [word_index] * size
    ids.append(SEP)
    word_ids.append(-1)
    pad = length - len(ids)
    assert pad >= 0
    ids += [PAD] * pad
    word_ids += [-1] * pad
    return torch.tensor([ids] * batch), torch.tensor([word_ids] * batch)


@pytest.fixture(scope="module")
def bert() -> VLMoTokenizer:
    if not BERT_VOCAB.is_file():
        pytest.skip(f"shared BERT vocab not found at {BERT_VOCAB}")
    return VLMoTokenizer(BERT_VOCAB)


def test_collate_stacks_tensors_and_lists_the_rest():
    batch = collate(
        [
            {"image": torch.zeros(3, 2, 2), "image_index": 4, "score": 0.5, "caption": "a", "labels": [1]},
            {"image": torch.ones(3, 2, 2), "image_index": 7, "score": 1, "caption": "b", "labels": []},
        ]
    )
    assert batch["image"].shape == (2, 3, 2, 2) and batch["image"][1].eq(1).all()
    assert batch["image_index"].dtype == torch.long and batch["image_index"].tolist() == [4, 7]
    assert batch["score"].dtype == torch.float32 and batch["score"].tolist() == [0.5, 1.0]
    assert batch["caption"] == ["a", "b"] and batch["labels"] == [[1], []]
    with pytest.raises(ValueError, match="different shapes"):
        collate([{"x": torch.zeros(2)}, {"x": torch.zeros(3)}])
    with pytest.raises(ValueError, match="keys"):
        collate([{"x": 1}, {"y": 1}])


def test_never_masks_specials_and_labels_only_at_masked_positions():
    ids, word_ids = full_batch(64, 40, [1, 2, 1, 3, 1, 1, 2, 1])
    ids[:, 5] = UNK
    ids_mlm, labels = ids_collator(seed=1).mask(ids, word_ids)
    masked = labels != IGNORE_INDEX
    special = (ids == PAD) | (ids == CLS) | (ids == SEP) | (ids == UNK)
    assert masked.any() and not (masked & special).any()
    assert torch.equal(labels[masked], ids[masked])
    assert torch.equal(ids_mlm[special], ids[special])  # specials untouched in the input too
    changed = ids_mlm != ids
    assert not (changed & ~masked).any()  # nothing outside the masked positions changes


def test_whole_words_are_masked_together(bert):
    texts = [
        "the unbelievable antidisestablishmentarianism of tokenization pipelines",
        "kedro and dvc pipelines, tokenized offline!",
    ]
    encoded = bert.encode(texts * 100)
    collator = WholeWordMaskCollator(bert, seed=3)
    _, labels = collator.mask(encoded["text_ids"], encoded["word_ids"])
    word_ids = encoded["word_ids"]
    masked = labels != IGNORE_INDEX
    assert masked.any()
    for row in range(word_ids.shape[0]):
        for word in word_ids[row].unique().tolist():
            if word < 0:
                continue
            in_word = masked[row][word_ids[row] == word]
            assert in_word.all() or not in_word.any(), f"row {row} word {word} partially masked"
    # a multi-piece word does get masked sometimes (so the test above is not vacuous)
    multi = [w for w in word_ids[0].unique().tolist() if w >= 0 and (word_ids[0] == w).sum() > 1]
    assert any(masked[r][word_ids[r] == w].all() for r in range(0, 200, 2) for w in multi)
    # without word_ids the ## table of the tokenizer yields the same groups
    _, labels_from_table = collator.mask(encoded["text_ids"], None, generator=torch.Generator().manual_seed(5))
    _, labels_from_words = collator.mask(encoded["text_ids"], word_ids, generator=torch.Generator().manual_seed(5))
    assert torch.equal(labels_from_table, labels_from_words)


def test_budget_over_padded_length_official_rule():
    collator = ids_collator(seed=0)
    # full 40-token row: 38 single-token words → exactly round(0.15*40) = 6 masked, every time
    ids, word_ids = full_batch(200, 40, [1] * 38)
    _, labels = collator.mask(ids, word_ids)
    assert (labels != IGNORE_INDEX).sum(dim=1).eq(6).all()
    # short row (3 words + 35 PAD candidates): on average 6 * 3/38 real tokens masked, often none
    ids, word_ids = full_batch(4000, 40, [1, 1, 1])
    _, labels = collator.mask(ids, word_ids)
    counts = (labels != IGNORE_INDEX).sum(dim=1).float()
    assert counts.max() <= 3
    assert counts.mean().item() == pytest.approx(6 * 3 / 38, abs=0.05)
    assert (counts == 0).float().mean() > 0.4
    # 196-token text: budget 29
    ids, word_ids = full_batch(20, 196, [1] * 194)
    _, labels = collator.mask(ids, word_ids)
    assert (labels != IGNORE_INDEX).sum(dim=1).eq(29).all()


def test_budget_over_real_length_alternative():
    collator = ids_collator(seed=0, budget_over_padded_length=False)
    ids, word_ids = full_batch(500, 40, [1] * 18)  # 20 real tokens → budget round(3.0) = 3
    _, labels = collator.mask(ids, word_ids)
    assert (labels != IGNORE_INDEX).sum(dim=1).eq(3).all()
    ids, word_ids = full_batch(500, 40, [1, 1])  # 4 real tokens → budget max(1, round(0.6)) = 1
    _, labels = collator.mask(ids, word_ids)
    assert (labels != IGNORE_INDEX).sum(dim=1).eq(1).all()


def test_words_that_overshoot_are_skipped_not_cut():
    # words of 5 tokens each plus singles; budget 6: a 5-token word may be followed only by a single
    ids, word_ids = full_batch(300, 40, [5] * 4 + [1] * 18)  # 38 tokens: no PAD
    _, labels = ids_collator(seed=2).mask(ids, word_ids)
    masked = labels != IGNORE_INDEX
    assert masked.sum(dim=1).eq(6).all()  # enough singles exist to always fill the budget exactly
    long_words_masked = torch.stack([masked[:, 1 + 5 * k : 6 + 5 * k].all(dim=1) for k in range(4)], dim=1).sum(dim=1)
    assert long_words_masked.max() <= 1 and long_words_masked.max() == 1


def test_80_10_10_split():
    ids, word_ids = full_batch(3000, 40, [1] * 38)
    ids_mlm, labels = ids_collator(seed=7).mask(ids, word_ids)
    masked = labels != IGNORE_INDEX
    total = masked.sum().item()  # 18,000 masked positions
    as_mask = (masked & (ids_mlm == MASK)).sum().item() / total
    unchanged = (masked & (ids_mlm == ids)).sum().item() / total
    other = (masked & (ids_mlm != MASK) & (ids_mlm != ids)).sum().item() / total
    # "random" draws sometimes hit the original id or [MASK] itself (2 of 50 ids): 0.1 * 48/50 genuinely other
    assert as_mask == pytest.approx(0.8 + 0.1 / VOCAB, abs=0.015)
    assert unchanged == pytest.approx(0.1 + 0.1 / VOCAB, abs=0.012)
    assert other == pytest.approx(0.1 * (VOCAB - 2) / VOCAB, abs=0.012)
    assert ids_mlm.max() < VOCAB and ids_mlm.min() >= 0


def test_seed_reproducible_and_call_interface(bert):
    texts = ["a red cube left of a sphere", "two dogs"]
    items = []
    for row, text in enumerate(texts):
        encoded = bert.encode([text])
        items.append({key: value[0] for key, value in encoded.items()} | {"caption": text, "image_index": row})
    first = WholeWordMaskCollator(bert, seed=11)(items)
    second = WholeWordMaskCollator(bert, seed=11)(items)
    assert torch.equal(first["text_ids_mlm"], second["text_ids_mlm"])
    assert torch.equal(first["text_labels_mlm"], second["text_labels_mlm"])
    assert first["text_labels"].eq(IGNORE_INDEX).all() and first["text_labels"].shape == first["text_ids"].shape
    assert first["caption"] == texts and first["image_index"].tolist() == [0, 1]
    clone = pickle.loads(pickle.dumps(WholeWordMaskCollator(bert, seed=11)))
    assert torch.equal(clone(items)["text_ids_mlm"], first["text_ids_mlm"])
    with pytest.raises(ValueError, match="tokenizer or the ids"):
        WholeWordMaskCollator(vocab_size=10)


def _reference_whole_word_mask(tokens: list[str], rng, mlm_probability: float = 0.15) -> list[int]:
    """Straight port of the selection rule of transformers 4.8.1 DataCollatorForWholeWordMask (spec §4.3)."""
    candidates: list[list[int]] = []
    for index, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            continue
        if candidates and token.startswith("##"):
            candidates[-1].append(index)
        else:
            candidates.append([index])
    rng.shuffle(candidates)
    budget = max(1, int(round(len(tokens) * mlm_probability)))
    chosen: list[int] = []
    for group in candidates:
        if len(chosen) >= budget:
            break
        if len(chosen) + len(group) > budget:
            continue
        chosen.extend(group)
    special = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"}
    return [int(i in chosen and tokens[i] not in special) for i in range(len(tokens))]


def test_masking_frequencies_match_the_official_rule():
    import random

    tokens = ["[CLS]", "a", "b", "##b", "##b", "c", "d", "##d", "e", "[SEP]"] + ["[PAD]"] * 10
    vocab = {"[PAD]": PAD, "[UNK]": UNK, "[CLS]": CLS, "[SEP]": SEP, "[MASK]": MASK}
    ids = torch.tensor([[vocab.get(t, 10 + i) for i, t in enumerate(tokens)]] * 20000)
    word_of = [-1, 0, 1, 1, 1, 2, 3, 3, 4, -1] + [-1] * 10
    word_ids = torch.tensor([word_of] * 20000)
    _, labels = ids_collator(seed=4).mask(ids, word_ids)
    ours = (labels != IGNORE_INDEX).float().mean(dim=0)
    rng = random.Random(4)
    reference = torch.tensor([_reference_whole_word_mask(tokens, rng) for _ in range(20000)]).float().mean(dim=0)
    assert reference[1:9].sum() > 0.5  # the example does mask real tokens
    assert torch.allclose(ours, reference, atol=0.015), (ours, reference)
