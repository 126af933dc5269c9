"""VLMoTokenizer against the real BERT-uncased vocab, and WordPiece vocab training."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from vlmo_pipeline.models.tokenizer import SPECIAL_TOKENS, VLMoTokenizer, train_wordpiece_vocab

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
BERT_VOCAB = SHARED / "datasamples" / "bert-base-uncased" / "vocab.txt"


@pytest.fixture(scope="module")
def bert() -> VLMoTokenizer:
    if not BERT_VOCAB.is_file():
        pytest.skip(f"shared BERT vocab not found at {BERT_VOCAB}")
    return VLMoTokenizer(BERT_VOCAB)


def test_bert_special_ids(bert):
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (0, 100, 101, 102, 103)
    assert bert.vocab_size == 30522


def test_known_tokenisation_and_word_ids(bert):
    text = "Kedro and DVC pipelines, tokenized offline!"
    expected = [
        "[CLS]",
        "ked",
        "##ro",
        "and",
        "d",
        "##vc",
        "pipeline",
        "##s",
        ",",
        "token",
        "##ized",
        "off",
        "##line",
        "!",
        "[SEP]",
    ]
    encoded = bert.encode([text])
    ids = encoded["text_ids"][0]
    assert encoded["text_ids"].shape == (1, 40) and encoded["text_ids"].dtype == torch.long
    assert [bert.id_to_token(i) for i in ids[: len(expected)].tolist()] == expected
    assert ids[len(expected) :].eq(bert.pad_id).all()
    assert encoded["text_masks"][0].tolist() == [1] * len(expected) + [0] * (40 - len(expected))
    # words: ked##ro=0 and=1 d##vc=2 pipeline##s=3 ,=4 token##ized=5 off##line=6 !=7
    assert encoded["word_ids"][0, : len(expected)].tolist() == [-1, 0, 0, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, -1]
    assert encoded["word_ids"][0, len(expected) :].eq(-1).all()
    specials = encoded["special_tokens_mask"][0]
    assert specials[0] == 1 and specials[len(expected) - 1] == 1 and specials[1 : len(expected) - 1].eq(0).all()
    assert specials[len(expected) :].eq(1).all()
    assert bert.decode(ids) == "kedro and dvc pipelines, tokenized offline!"


def test_accents_stripped_and_truncation_keeps_sep(bert):
    encoded = bert.encode(["Café Über " + "word " * 50, "x"], max_len=8)
    assert encoded["text_ids"].shape == (2, 8)
    first = [bert.id_to_token(i) for i in encoded["text_ids"][0].tolist()]
    assert first[:3] == ["[CLS]", "cafe", "uber"] and first[-1] == "[SEP]"
    assert encoded["text_masks"][0].eq(1).all()
    assert encoded["text_masks"][1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    # a later call with the default length is not affected by the previous max_len
    assert bert.encode(["x"])["text_ids"].shape == (1, 40)


def test_tokenize_is_unpadded_and_unk(bert):
    assert bert.tokenize("hello ☃ world") == ["hello", "[UNK]", "world"]


def test_tokenizer_pickles(bert):
    clone = pickle.loads(pickle.dumps(bert))
    text = ["a dog on a skateboard"]
    assert torch.equal(clone.encode(text)["text_ids"], bert.encode(text)["text_ids"])


def test_train_small_vocab_round_trips(tmp_path):
    sentences = [
        "the red cube is left of the blue sphere",
        "two green cylinders are right of a small yellow cube",
        "is there a large purple sphere behind the cubes?",
        "the scene holds three spheres and one cylinder.",
    ] * 3
    vocab_path = train_wordpiece_vocab(iter(sentences), tmp_path / "tok" / "vocab.txt", vocab_size=120)
    assert vocab_path == tmp_path / "tok" / "vocab.txt"
    lines = vocab_path.read_text(encoding="utf-8").splitlines()
    assert lines[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert len(lines) == len(set(lines)) <= 120
    assert any(line.startswith("##") for line in lines)
    assert not list(vocab_path.parent.glob("*.tmp"))

    tokenizer = VLMoTokenizer(vocab_path, max_len=24)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    for sentence in sentences[:4]:
        encoded = tokenizer.encode([sentence])
        assert tokenizer.unk_id not in encoded["text_ids"][0].tolist()
        # decode joins punctuation with spaces like BERT; compare word sequences
        assert tokenizer.decode(encoded["text_ids"][0]).replace(" ?", "?").replace(" .", ".") == sentence


def test_bad_vocab_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        VLMoTokenizer(tmp_path / "missing.txt")
    no_mask = tmp_path / "no_mask.txt"
    no_mask.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        VLMoTokenizer(no_mask)
    duplicate = tmp_path / "dup.txt"
    duplicate.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup.txt:7: duplicate"):
        VLMoTokenizer(duplicate)
