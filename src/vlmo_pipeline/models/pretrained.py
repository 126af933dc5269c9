"""The model directory written by :meth:`VLMo.save_pretrained`: the one home of its file names, and the loader
that opens one with its tokenizer.

A model directory holds ``config.json`` (the :class:`~vlmo_pipeline.models.config.VLMoConfig`),
``model.safetensors`` (the weights), ``vocab.txt`` (the WordPiece vocabulary the model was trained with) and, for
a VQA model, ``answer_vocab.json`` (the answers in label order, as the VQAv2 ingest wrote them). Every reader in
the project (the factory, the training runner, the evaluation, the ``vlmo`` commands) takes the names from here.

Importing this module loads nothing beyond the standard library; the loader imports the model when called.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tokenizer import VLMoTokenizer
    from .vlmo import VLMo

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "VOCAB_NAME",
    "ANSWER_VOCAB_NAME",
    "MODEL_FILES",
    "missing_model_files",
    "read_answer_vocab",
    "Pretrained",
    "load_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.txt"
ANSWER_VOCAB_NAME = "answer_vocab.json"
#: The files without which a directory is not a model directory.
MODEL_FILES: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME)


def missing_model_files(directory: str | os.PathLike) -> list[str]:
    """Which of :data:`MODEL_FILES` ``directory`` lacks (all of them when it is not a directory)."""
    return [name for name in MODEL_FILES if not (Path(directory) / name).is_file()]


def read_answer_vocab(directory: str | os.PathLike, num_labels: int | None = None) -> list[str] | None:
    """The answers of ``<directory>/answer_vocab.json`` in label order; ``None`` when the file is absent. A file
    that is not a JSON list of strings (of ``num_labels`` entries, when given) raises ``ValueError`` naming it."""
    path = Path(directory) / ANSWER_VOCAB_NAME
    if not path.is_file():
        return None
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(answers, list) or (num_labels is not None and len(answers) != num_labels):
        got = f"{len(answers)} entries" if isinstance(answers, list) else f"a {type(answers).__name__}"
        expected = f"{num_labels} answers" if num_labels is not None else "answers"
        raise ValueError(f"{path}: expected a JSON list of {expected} in label order, got {got}")
    return [str(answer) for answer in answers]


@dataclass
class Pretrained:
    """A loaded model directory: the model, the tokenizer of its ``vocab.txt``, its answers (VQA) or ``None``."""

    directory: Path
    model: VLMo
    tokenizer: VLMoTokenizer
    answer_vocab: list[str] | None


def load_pretrained(
    directory: str | os.PathLike,
    max_text_len: int | None = None,
    vocab_file: str | os.PathLike | None = None,
    **overrides: Any,
) -> Pretrained:
    """Open a model directory: :meth:`VLMo.from_pretrained` (``overrides`` as there, e.g. ``image_size``), the
    tokenizer of its ``vocab.txt`` (or ``vocab_file``) padded to ``max_text_len`` (at most the model's), and the
    answer vocabulary when there is one. A missing file raises ``FileNotFoundError`` naming it."""
    from .tokenizer import VLMoTokenizer
    from .vlmo import VLMo

    directory = Path(directory)
    if missing := missing_model_files(directory):
        raise FileNotFoundError(f"{directory}: not a model directory (no {' and no '.join(missing)})")
    vocab = Path(vocab_file) if vocab_file is not None else directory / VOCAB_NAME
    if not vocab.is_file():
        raise FileNotFoundError(f"{directory}: no {VOCAB_NAME}: the model's text cannot be tokenised")
    model = VLMo.from_pretrained(directory, **overrides)
    length = model.config.max_text_len if max_text_len is None else min(max_text_len, model.config.max_text_len)
    tokenizer = VLMoTokenizer(vocab, lowercase=True, max_len=length)
    answers = read_answer_vocab(
        directory, model.config.vqa_num_labels if getattr(model, "vqa_classifier", None) is not None else None
    )
    return Pretrained(directory, model, tokenizer, answers)
