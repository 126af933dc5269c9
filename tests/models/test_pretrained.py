"""The model directory (models/pretrained.py): one loader for model, tokenizer and answers, and clear errors."""

from __future__ import annotations

import json

import pytest

from vlmo_pipeline.models import create_model, load_pretrained
from vlmo_pipeline.models.pretrained import ANSWER_VOCAB_NAME, VOCAB_NAME, missing_model_files, read_answer_vocab

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "yes", "no"]


def _vqa_dir(tmp_path, answers):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    model = create_model("vlmo_tiny", vocab_size=len(WORDS), loss_names=("vqa",), vqa_num_labels=len(answers))
    directory = model.save_pretrained(tmp_path / "vqa", vocab_file=vocab)
    (directory / ANSWER_VOCAB_NAME).write_text(json.dumps(answers))
    return directory


def test_load_pretrained_gives_model_tokenizer_and_answers(tmp_path):
    directory = _vqa_dir(tmp_path, ["yes", "no", "red"])
    loaded = load_pretrained(directory, max_text_len=8)
    assert loaded.answer_vocab == ["yes", "no", "red"]
    assert loaded.tokenizer.vocab_size == len(WORDS)
    assert loaded.tokenizer.encode(["a red circle"])["text_ids"].shape == (1, 8)  # padded to the asked length
    assert missing_model_files(directory) == []


def test_model_directory_problems_name_the_file(tmp_path):
    directory = _vqa_dir(tmp_path, ["yes", "no"])
    (directory / ANSWER_VOCAB_NAME).write_text(json.dumps(["yes"]))  # one answer for two labels
    with pytest.raises(ValueError, match=r"answer_vocab.json: expected a JSON list of 2 answers .* got 1 entries"):
        load_pretrained(directory)
    (directory / ANSWER_VOCAB_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="answer_vocab.json: invalid JSON"):
        read_answer_vocab(directory)
    (directory / VOCAB_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"no vocab.txt"):
        load_pretrained(directory)
    assert missing_model_files(tmp_path) == ["config.json", "model.safetensors"]
    with pytest.raises(FileNotFoundError, match=r"not a model directory \(no config.json and no model.safetensors\)"):
        load_pretrained(tmp_path)
