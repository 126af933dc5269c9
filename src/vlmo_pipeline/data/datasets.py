"""Map-style torch Datasets over the Arrow shards of ``data/03_primary`` (schemas: docs/data_layout.md).

How this differs from the official ViLT/VLMo readers (spec §6), and why:

* Shards are opened through the dataset's ``manifest.json`` (never a directory scan): its shard list and split
  names decide what is read. A directory without a manifest, or with ``ingest_failed.json``, is refused naming
  it; every listed shard must exist with the manifest's byte size and row count and the dataset kind's schema
  (``verify="sha256"`` also hashes every shard). A split with no shard is one clear error naming the directory and
  the splits that do exist (the official reader crashes with an IndexError).
* Every Arrow/OS error while opening or reading a shard is an :class:`~vlmo_pipeline.data.arrow_io.ShardError`
  naming the shard (and the record batch / row when known).
* Shards are memory-mapped and read lazily per record batch; no column is ever turned into pandas or Python
  lists. The sample index is a pair of numpy arrays (``row_of_sample`` int64 + ``caption_of_sample`` int32,
  ~12 bytes per sample) built from the list offsets, instead of a Python dict with one tuple per caption that
  every DataLoader worker duplicates.
* Datasets pickle without their open memory maps (workers reopen them), so they work with any start method.
* A sample whose image cannot be decoded raises :class:`CorruptSampleError` naming shard, row and image id,
  instead of being silently replaced by a random other sample; with ``corrupt_policy="skip"`` such samples are
  replaced by the next good one, logged and counted, and more than ``max_corrupt_rate`` of them is an error.
* ``text_only=True`` skips image decoding (the official retrieval text loader decodes the image of every
  caption only to throw it away).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vlmo_pipeline.data.arrow_io import ShardError
from vlmo_pipeline.data.shards import (
    ShardedArrowTable,
    SourceSpec,
    check_shard_files,
    expand_lists,
    resolve_shard_sources,
)
from vlmo_pipeline.models.pretrained import ANSWER_VOCAB_NAME
from vlmo_pipeline.models.transforms import decode_image

log = logging.getLogger(__name__)

#: What a sample that cannot be used does at read time: ``fail`` raises, ``skip`` logs, counts and replaces it.
CORRUPT_POLICIES = ("fail", "skip")
ANSWER_VOCAB_FILE = ANSWER_VOCAB_NAME  # the ingest writes it beside the shards; the VQA model directory keeps a copy

Transform = Callable[[Any], torch.Tensor]


class CorruptSampleError(RuntimeError):
    """A stored sample cannot be used (undecodable image, inconsistent lists); the message says where."""


def load_answer_vocab(dataset_dir: str | os.PathLike) -> list[str]:
    """Answers by label id from ``<dataset_dir>/answer_vocab.json``.

    Accepted layouts: a list of answers (index = label id); ``{"0": "yes", ...}`` (id → answer);
    ``{"yes": 0, ...}`` (answer → id); or one of these under a key ``label2ans``/``id2answer``/``answers``.
    """
    path = Path(dataset_dir) / ANSWER_VOCAB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"VQA answer vocabulary {path} not found (written by the vqav2 ingest)")
    content = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(content, dict):
        for key in ("label2ans", "id2answer", "answers"):
            if key in content:
                content = content[key]
                break
    if isinstance(content, list) and all(isinstance(answer, str) for answer in content):
        return list(content)
    if isinstance(content, dict) and content:
        if all(str(key).isdigit() for key in content) and all(isinstance(v, str) for v in content.values()):
            by_id = {int(key): answer for key, answer in content.items()}
        elif all(isinstance(v, int) for v in content.values()):
            by_id = {label: answer for answer, label in content.items()}
        else:
            by_id = {}
        if by_id and sorted(by_id) == list(range(len(by_id))):
            return [by_id[label] for label in range(len(by_id))]
    raise ValueError(f"{path}: expected a list of answers or a label-id ↔ answer mapping with ids 0..N-1")


# -------------------------------------------------------------------------------------------- datasets
class _ArrowDataset(Dataset):
    """Shared plumbing: manifest-checked shards, image decoding with located errors, the corrupt-sample policy.

    Options every dataset takes (keywords):

    * ``verify``: ``"size"`` (default: every listed shard exists with the manifest's byte size, row count and the
      dataset kind's schema; cheap) or ``"sha256"`` (also hash every shard at open, like ``vlmo verify``).
    * ``corrupt_policy``: ``"fail"`` (default: a sample that cannot be used raises :class:`CorruptSampleError` /
      :class:`ShardError` naming where) or ``"skip"``: it is logged, counted and replaced by the next usable
      sample; once more than ``max_corrupt_rate`` × ``len(dataset)`` distinct samples were skipped (in this
      process: each DataLoader worker counts its own), the next one raises :class:`CorruptSampleError`.
    """

    def __init__(
        self,
        sources: SourceSpec | Sequence[SourceSpec],
        split: str | None,
        required_columns: Iterable[str],
        transform: Transform | None,
        tokenizer: Any | None,
        max_text_len: int,
        verify: str = "size",
        corrupt_policy: str = "fail",
        max_corrupt_rate: float = 0.001,
    ) -> None:
        if corrupt_policy not in CORRUPT_POLICIES:
            raise ValueError(f"corrupt_policy must be one of {CORRUPT_POLICIES}, got {corrupt_policy!r}")
        if not 0.0 <= max_corrupt_rate < 1.0:
            raise ValueError(f"max_corrupt_rate must be in [0, 1), got {max_corrupt_rate}")
        shards = resolve_shard_sources(sources, split)
        check_shard_files(shards, verify)
        self.shard_paths = [shard.path for shard in shards]
        self.table = ShardedArrowTable(shards, required_columns)
        self.transform = transform
        self.tokenizer = tokenizer
        self.max_text_len = max_text_len
        self.corrupt_policy = corrupt_policy
        self.max_corrupt_rate = max_corrupt_rate
        #: indices of the samples skipped as corrupt so far (in this process)
        self.corrupt_samples: set[int] = set()

    def _item(self, index: int) -> dict[str, Any]:  # pragma: no cover - every dataset defines it
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self._item(index)
        except (CorruptSampleError, ShardError) as error:
            if self.corrupt_policy == "fail":
                raise
            return self._skip(int(index), error)

    @property
    def max_corrupt_samples(self) -> int:
        """How many distinct samples ``corrupt_policy="skip"`` may skip before it fails."""
        return math.floor(self.max_corrupt_rate * len(self))

    def _skip(self, index: int, error: Exception) -> dict[str, Any]:
        size, candidate = len(self), index
        while True:
            self.corrupt_samples.add(candidate)
            if len(self.corrupt_samples) > self.max_corrupt_samples:
                raise CorruptSampleError(
                    f"{len(self.corrupt_samples)} corrupt samples of {size} exceed max_corrupt_rate "
                    f"{self.max_corrupt_rate} ({self.max_corrupt_samples} may be skipped); last: {error}"
                ) from error
            log.warning(
                "skipping corrupt sample %d (%d of at most %d skipped): %s",
                candidate,
                len(self.corrupt_samples),
                self.max_corrupt_samples,
                error,
            )
            candidate = (candidate + 1) % size
            while candidate in self.corrupt_samples and candidate != index:
                candidate = (candidate + 1) % size
            try:
                return self._item(candidate)
            except (CorruptSampleError, ShardError) as next_error:
                error = next_error

    def _load_image(self, row: int, column: str = "image") -> torch.Tensor:
        data = self.table.value(row, column)
        try:
            if data is None:
                raise ValueError("image cell is null")
            image = decode_image(data)
        except ValueError as error:
            image_id = self.table.value(row, "image_id") if self.table.has_column("image_id") else "?"
            raise CorruptSampleError(
                f"{self.table.where(row)} (image_id {image_id!r}, column {column!r}): {error}"
            ) from error
        if self.transform is None:
            raise ValueError(f"{type(self).__name__} needs a transform to turn images into tensors")
        return self.transform(image)

    def _text_fields(self, text: str) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer for text fields")
        encoded = self.tokenizer.encode([text], max_len=self.max_text_len)
        return {key: value[0] for key, value in encoded.items()}


class ImageTextDataset(_ArrowDataset):
    """Image–caption pairs from caption datasets (coco, f30k, vg, cc3m, sbu), one sample per caption.

    Args:
        sources: one or more shard sources (see :func:`resolve_sources`), concatenated in order with one index
            (e.g. coco + vg + cc3m + sbu for stage 3, or coco train + restval).
        split: split used for sources given as dataset directories.
        transform: PIL image → tensor (see ``models.transforms``); not needed with ``text_only``.
        tokenizer: a ``VLMoTokenizer`` (anything with ``encode(texts, max_len)``); not needed with ``image_only``.
        max_text_len: token length incl. [CLS]/[SEP].
        image_only: one sample per row (image set of retrieval evaluation); items carry no text.
        text_only: skip image decoding (text set of retrieval evaluation, or caption text for MLM).

    Items: ``image`` (3,H,W), ``text_ids``/``text_masks``/``word_ids``/``special_tokens_mask`` (L,) long,
    ``caption`` str, ``image_index`` (global row: the same for every caption of an image — the key that
    matches captions to images in retrieval), ``caption_index`` (position of the caption in its row) and
    ``image_id``. ``row_of_sample``/``caption_of_sample`` are public numpy arrays (sample → row / caption).
    """

    text_column = "caption"

    def __init__(
        self,
        sources: SourceSpec | Sequence[SourceSpec],
        split: str | None = None,
        transform: Transform | None = None,
        tokenizer: Any | None = None,
        max_text_len: int = 40,
        image_only: bool = False,
        text_only: bool = False,
        **options: Any,
    ) -> None:
        if image_only and text_only:
            raise ValueError("image_only and text_only exclude each other")
        required = [self.text_column] + ([] if text_only else ["image"])
        super().__init__(sources, split, required, transform, tokenizer, max_text_len, **options)
        if not text_only and transform is None:
            raise ValueError(f"{type(self).__name__} needs a transform unless text_only=True")
        if not image_only and tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer unless image_only=True")
        self.image_only = image_only
        self.text_only = text_only
        if image_only:
            self.row_of_sample = np.arange(self.table.num_rows, dtype=np.int64)
            self.caption_of_sample = np.full(self.table.num_rows, -1, dtype=np.int32)
        else:
            self.row_of_sample, self.caption_of_sample = expand_lists(self.table.list_lengths(self.text_column))
        self._has_image_id = self.table.has_column("image_id")

    def __len__(self) -> int:
        return len(self.row_of_sample)

    def _item(self, index: int) -> dict[str, Any]:
        row = int(self.row_of_sample[index])
        item: dict[str, Any] = {"image_index": row}
        if self._has_image_id:
            item["image_id"] = self.table.value(row, "image_id")
        if not self.text_only:
            item["image"] = self._load_image(row)
        if not self.image_only:
            caption_index = int(self.caption_of_sample[index])
            caption = self.table.list_item(row, self.text_column, caption_index)
            if caption is None:
                raise CorruptSampleError(f"{self.table.where(row)}: caption {caption_index} is null")
            item["caption"] = caption
            item["caption_index"] = caption_index
            item.update(self._text_fields(caption))
        return item


class ImageOnlyDataset(ImageTextDataset):
    """Images of caption datasets, one item per row (stage-1 masked image modelling): ``image``, ``image_index``."""

    def __init__(
        self,
        sources: SourceSpec | Sequence[SourceSpec],
        split: str | None = None,
        transform: Transform | None = None,
        **options: Any,
    ) -> None:
        super().__init__(sources, split, transform=transform, tokenizer=None, image_only=True, **options)


class TextDataset(ImageTextDataset):
    """Sentences of the text corpus (``text`` dataset: one sentence per row) or of any caption dataset.

    Stage-2 text-only MLM; ``max_text_len`` is 196 in the official config. Items: text fields, ``caption``
    (the sentence), ``image_index`` (row) and ``caption_index``.
    """

    def __init__(
        self,
        sources: SourceSpec | Sequence[SourceSpec],
        split: str | None = None,
        tokenizer: Any | None = None,
        max_text_len: int = 196,
        **options: Any,
    ) -> None:
        super().__init__(
            sources, split, transform=None, tokenizer=tokenizer, max_text_len=max_text_len, text_only=True, **options
        )


class VQADataset(_ArrowDataset):
    """VQAv2, one sample per question, from the per-image rows.

    ``num_labels`` comes from ``answer_vocab.json`` in the dataset directory of the sources (all sources must
    share one vocabulary) unless given. ``drop_unanswerable`` leaves out questions without any in-vocabulary
    answer (the official training rule, spec §5.3); test rows have no answers and must keep it False.

    Items: ``image``, text fields of the question, ``question`` str, ``vqa_targets`` float (num_labels,) with the
    soft scores at the answer labels, ``question_id`` int, ``answer_labels`` list[int], ``answer_scores``
    list[float], ``answers`` list[str] (raw annotator answers), ``answer_type`` str ("" if unknown),
    ``image_index`` (global row), ``image_id``.
    """

    def __init__(
        self,
        sources: SourceSpec | Sequence[SourceSpec],
        split: str | None = None,
        transform: Transform | None = None,
        tokenizer: Any | None = None,
        max_text_len: int = 40,
        num_labels: int | None = None,
        drop_unanswerable: bool = False,
        **options: Any,
    ) -> None:
        required = ["image", "questions", "question_id", "answer_labels", "answer_scores"]
        super().__init__(sources, split, required, transform, tokenizer, max_text_len, **options)
        if transform is None or tokenizer is None:
            raise ValueError("VQADataset needs both a transform and a tokenizer")
        self.answer_vocab = self._shared_answer_vocab() if num_labels is None else None
        self.num_labels = len(self.answer_vocab) if num_labels is None else int(num_labels)
        question_counts = self.table.list_lengths("questions")
        self._check_parallel_lists(question_counts)
        rows, positions = expand_lists(question_counts)
        # Test rows carry empty answer lists; remember per row whether answers exist (one bool per image).
        self._row_has_answers = self.table.list_lengths("answer_labels") > 0
        if drop_unanswerable:
            labels_per_question = np.zeros(len(rows), dtype=np.int64)
            # inner lists of answer_labels exist only for answered rows, in question order
            labels_per_question[self._row_has_answers[rows]] = self.table.nested_list_lengths("answer_labels")
            keep = labels_per_question > 0
            rows, positions = rows[keep], positions[keep]
        self.row_of_sample, self.question_of_sample = rows, positions

    def _shared_answer_vocab(self) -> list[str]:
        directories = sorted({path.parent for path in self.shard_paths})
        vocabularies = [load_answer_vocab(directory) for directory in directories]
        for directory, vocabulary in zip(directories[1:], vocabularies[1:]):
            if vocabulary != vocabularies[0]:
                raise ValueError(f"{directory / ANSWER_VOCAB_FILE} differs from {directories[0] / ANSWER_VOCAB_FILE}")
        return vocabularies[0]

    def _check_parallel_lists(self, question_counts: np.ndarray) -> None:
        # question_id must parallel questions; answer lists parallel them too or are empty (test split).
        checks = {
            "question_id": (self.table.list_lengths("question_id"), False),
            "answer_labels": (self.table.list_lengths("answer_labels"), True),
            "answer_scores": (self.table.list_lengths("answer_scores"), True),
        }
        for optional in ("answers", "answer_type"):
            if self.table.has_column(optional):
                checks[optional] = (self.table.list_lengths(optional), True)
        for column, (counts, may_be_empty) in checks.items():
            bad = (counts != question_counts) & ~((counts == 0) & may_be_empty)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise CorruptSampleError(
                    f"{self.table.where(row)}: {column} has {counts[row]} entries for {question_counts[row]} questions"
                )

    def _optional_list_item(self, row: int, column: str, position: int, default: Any) -> Any:
        """Element of an optional list column, or ``default`` when the column or the row's list is absent."""
        if not self.table.has_column(column):
            return default
        cell = self.table.scalar(row, column)
        if not cell.is_valid or len(cell) <= position:
            return default
        value = cell.values[position].as_py()
        return default if value is None else value

    def __len__(self) -> int:
        return len(self.row_of_sample)

    def _item(self, index: int) -> dict[str, Any]:
        row = int(self.row_of_sample[index])
        position = int(self.question_of_sample[index])
        table = self.table
        question = table.list_item(row, "questions", position)
        has_answers = bool(self._row_has_answers[row])
        labels = table.list_item(row, "answer_labels", position) if has_answers else []
        scores = table.list_item(row, "answer_scores", position) if has_answers else []
        labels, scores = labels or [], scores or []
        if len(labels) != len(scores):
            raise CorruptSampleError(
                f"{table.where(row)}: question {position} has {len(labels)} answer labels but {len(scores)} scores"
            )
        targets = torch.zeros(self.num_labels, dtype=torch.float32)
        if labels:
            label_tensor = torch.tensor(labels, dtype=torch.long)
            if int(label_tensor.min()) < 0 or int(label_tensor.max()) >= self.num_labels:
                raise CorruptSampleError(
                    f"{table.where(row)}: question {position} has answer labels {labels} outside [0, {self.num_labels})"
                )
            targets[label_tensor] = torch.tensor(scores, dtype=torch.float32)
        item: dict[str, Any] = {
            "image": self._load_image(row),
            "question": question,
            "vqa_targets": targets,
            "question_id": table.list_item(row, "question_id", position),
            "answer_labels": list(labels),
            "answer_scores": list(scores),
            "answers": self._optional_list_item(row, "answers", position, default=[]),
            "answer_type": self._optional_list_item(row, "answer_type", position, default=""),
            "image_index": row,
            "image_id": table.value(row, "image_id") if table.has_column("image_id") else None,
        }
        item.update(self._text_fields(question))
        return item


class NLVR2Dataset(_ArrowDataset):
    """NLVR2, one sample per sentence of an image-pair row.

    Items: ``image_0``, ``image_1``, text fields of the sentence, ``sentence`` str, ``label`` int (1 if the
    answer is "True", 0 if "False"), ``identifier`` (pair id), ``image_index`` (global row), ``sentence_index``.
    """

    def __init__(
        self,
        sources: SourceSpec | Sequence[SourceSpec],
        split: str | None = None,
        transform: Transform | None = None,
        tokenizer: Any | None = None,
        max_text_len: int = 40,
        **options: Any,
    ) -> None:
        required = ["image_0", "image_1", "questions", "answers"]
        super().__init__(sources, split, required, transform, tokenizer, max_text_len, **options)
        if transform is None or tokenizer is None:
            raise ValueError("NLVR2Dataset needs both a transform and a tokenizer")
        sentence_counts = self.table.list_lengths("questions")
        answer_counts = self.table.list_lengths("answers")
        mismatched = np.flatnonzero(sentence_counts != answer_counts)
        if len(mismatched):
            row = int(mismatched[0])
            raise CorruptSampleError(
                f"{self.table.where(row)}: {answer_counts[row]} answers for {sentence_counts[row]} sentences"
            )
        self.row_of_sample, self.sentence_of_sample = expand_lists(sentence_counts)
        self._has_identifier = self.table.has_column("identifier")

    def __len__(self) -> int:
        return len(self.row_of_sample)

    def _item(self, index: int) -> dict[str, Any]:
        row = int(self.row_of_sample[index])
        position = int(self.sentence_of_sample[index])
        sentence = self.table.list_item(row, "questions", position)
        answer = self.table.list_item(row, "answers", position)
        if answer not in ("True", "False"):
            raise CorruptSampleError(
                f"{self.table.where(row)}: answer {position} is {answer!r}, expected 'True' or 'False'"
            )
        item: dict[str, Any] = {
            "image_0": self._load_image(row, "image_0"),
            "image_1": self._load_image(row, "image_1"),
            "sentence": sentence,
            "label": int(answer == "True"),
            "identifier": self.table.value(row, "identifier") if self._has_identifier else None,
            "image_index": row,
            "sentence_index": position,
        }
        item.update(self._text_fields(sentence))
        return item
