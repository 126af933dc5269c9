"""The WordPiece vocabulary every stage tokenizes with: BERT's ``vocab.txt`` for real runs, a trained one for the demo.

The official models use ``bert-base-uncased`` (30,522 tokens). Nothing can be downloaded here, so real runs point
``vocab_file`` at a local copy; the demo world trains a small BERT-style vocabulary on its own text (the corpus
sentences plus the captions / questions / statements of the named datasets) so every word it uses is covered.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vlmo_pipeline.data.shards import ShardedArrowTable, list_shards
from vlmo_pipeline.models.pretrained import VOCAB_NAME
from vlmo_pipeline.models.tokenizer import VLMoTokenizer, train_wordpiece_vocab
from vlmo_pipeline.schema import build_config

__all__ = ["VocabConfig", "corpus_lines", "build_vocab"]

#: Text columns tried in this order (caption datasets and the text corpus: ``caption``; VQA/NLVR2: ``questions``).
TEXT_COLUMNS = ("caption", "questions")


@dataclass
class VocabConfig:
    """``vocab_file``: use this existing ``vocab.txt`` (e.g. BERT's) as is. Otherwise train ``vocab_size`` tokens
    on ``corpora`` (dataset name → splits)."""

    vocab_file: str | None = None
    vocab_size: int = 1000
    min_frequency: int = 1
    lowercase: bool = True
    corpora: dict[str, list[str]] = field(default_factory=lambda: {"text": ["train"]})

    @classmethod
    def from_dict(cls, values: Mapping | None, where: str = "parameters_vocab.yml", path: str = "vocab") -> VocabConfig:
        """Typed construction (:func:`vlmo_pipeline.schema.build_config`): wrong types and unknown keys are errors."""
        return build_config(cls, values, where, path)


def corpus_lines(dataset_dir: str | os.PathLike, splits: list[str]) -> Iterator[str]:
    """Every text of the given splits of one Arrow dataset (list cells are flattened), without decoding images."""
    directory = Path(dataset_dir)
    for split in splits:
        table = ShardedArrowTable(list_shards(directory.parent, directory.name, split))
        column = next((name for name in TEXT_COLUMNS if table.has_column(name)), None)
        if column is None:
            raise ValueError(f"{directory} ({split}) has none of the text columns {TEXT_COLUMNS}")
        for chunk in table.column_chunks(column):
            for cell in chunk.to_pylist():
                if isinstance(cell, list):
                    yield from (text for text in cell if text)
                elif cell:
                    yield cell


def build_vocab(config: VocabConfig, dataset_dirs: Mapping[str, str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/vocab.txt``: a copy of ``config.vocab_file`` or a vocabulary trained on the corpora."""
    out_path = Path(out_dir) / VOCAB_NAME
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if config.vocab_file:
        source = Path(config.vocab_file)
        VLMoTokenizer(source)  # validates the file (special tokens, duplicates) with a located error
        shutil.copyfile(source, out_path)
        return out_path
    missing = [name for name in config.corpora if name not in dataset_dirs]
    if missing:
        raise ValueError(f"vocab corpora {missing} are not among the available datasets {sorted(dataset_dirs)}")

    def lines() -> Iterator[str]:
        for name, splits in config.corpora.items():
            yield from corpus_lines(dataset_dirs[name], splits)

    return train_wordpiece_vocab(
        lines(), out_path, vocab_size=config.vocab_size, min_frequency=config.min_frequency, lowercase=config.lowercase
    )
