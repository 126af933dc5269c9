"""Lightning data modules: the Arrow-backed datasets of :mod:`vlmo_pipeline.data.datasets` per stage / task.

One :class:`VLMoDataModule` serves every stage; what it reads is decided by the :class:`RunConfig`:

* ``stage1``: images of the caption datasets (one item per image), collated with BEiT blockwise patch masks;
* ``stage2``: text corpus sentences, collated with whole-word masking;
* ``stage3``: image-caption pairs of every pretraining dataset, whole-word masked as well;
* ``retrieval`` / ``vqa`` / ``nlvr2``: the task's training split (the evaluation builds its own loaders:
  ``vlmo_pipeline.evaluation``).

Training loaders shuffle with a seeded generator and drop the last partial batch (ITC/ITM need equal per-rank
batches); Lightning swaps in a ``DistributedSampler`` when several devices train.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from vlmo_pipeline.data.collate import WholeWordMaskCollator, collate
from vlmo_pipeline.data.datasets import (
    ImageOnlyDataset,
    ImageTextDataset,
    NLVR2Dataset,
    TextDataset,
    VQADataset,
)
from vlmo_pipeline.data.masking import MIMCollator
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.transforms import build_eval_transform, build_train_transform
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.sampling import ResumableDataLoader, ResumableRandomSampler

__all__ = ["VLMoDataModule"]


def _collate_generator_fn(collate_fn: Any) -> Callable[[], torch.Generator | None] | None:
    """The accessor of a collator's private masking generator (MIM block masks, whole-word MLM masks), if any."""
    if isinstance(collate_fn, MIMCollator):
        return collate_fn._rng
    if isinstance(collate_fn, WholeWordMaskCollator):
        return collate_fn._default_generator
    return None


class VLMoDataModule(L.LightningDataModule):
    """Training (and evaluation) data of one run.

    Args:
        config: the run configuration (``config.data`` says which datasets and splits).
        tokenizer: the WordPiece tokenizer (not used by stage 1).
        image_size: model input size in pixels.
        patch_size: model patch size (stage-1 mask grid).
        answer_vocab_size: VQA label count (from the model's head), checked against the dataset's vocabulary.
    """

    def __init__(
        self,
        config: RunConfig,
        tokenizer: VLMoTokenizer | None,
        image_size: int,
        patch_size: int,
        answer_vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.data = config.data
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.patch_size = patch_size
        self.answer_vocab_size = answer_vocab_size
        self.eval_transform = build_eval_transform(image_size)
        self.train_transform = (
            build_train_transform(image_size, randaug=self.data.randaug, hflip=self.data.hflip)
            if self.data.augment
            else self.eval_transform
        )
        self.train_dataset: Dataset | None = None
        #: the resumable sampler of the training loader (None for a plain loader: workers or several devices)
        self.train_sampler: ResumableRandomSampler | None = None

    # ------------------------------------------------------------------------------------------ datasets
    def _text_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "max_text_len": self.data.max_text_len, **self._open_kwargs()}

    def _open_kwargs(self) -> dict[str, Any]:
        """How the training shards are checked at open and what a corrupt sample does (``data.verify`` etc.)."""
        return {
            "verify": self.data.verify,
            "corrupt_policy": self.data.corrupt_policy,
            "max_corrupt_rate": self.data.max_corrupt_rate,
        }

    def build_train_dataset(self) -> Dataset:
        """The training dataset of the configured stage (optionally truncated to ``max_train_samples``)."""
        stage = self.config.stage
        if not self.data.datasets:
            raise ValueError(f"{self.config.name}: data.datasets is empty: name the training datasets and splits")
        sources = self.data.sources(self.data.datasets)
        if stage == "stage1":
            dataset: Dataset = ImageOnlyDataset(sources, transform=self.train_transform, **self._open_kwargs())
        elif stage == "stage2":
            dataset = TextDataset(sources, **self._text_kwargs())
        elif stage in ("stage3", "retrieval"):
            dataset = ImageTextDataset(sources, transform=self.train_transform, **self._text_kwargs())
        elif stage == "vqa":
            dataset = VQADataset(sources, transform=self.train_transform, drop_unanswerable=True, **self._text_kwargs())
            self._check_answer_vocab(dataset)
        elif stage == "nlvr2":
            dataset = NLVR2Dataset(sources, transform=self.train_transform, **self._text_kwargs())
        else:  # pragma: no cover - RunConfig validates the stage
            raise ValueError(f"unknown stage {stage!r}")
        limit = self.data.max_train_samples
        if limit is not None and limit < len(dataset):
            dataset = Subset(dataset, range(limit))
        return dataset

    def _check_answer_vocab(self, dataset: VQADataset) -> None:
        if self.answer_vocab_size is not None and dataset.num_labels != self.answer_vocab_size:
            raise ValueError(
                f"the VQA head has {self.answer_vocab_size} answers but {dataset.shard_paths[0].parent} has an "
                f"answer vocabulary of {dataset.num_labels}"
            )

    def train_collate_fn(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        stage = self.config.stage
        if stage == "stage1":
            mim = self.config.mim
            grid = self.image_size // self.patch_size
            return MIMCollator(grid, mim.mask_ratio, mim.min_num_patches, mim.max_aspect, self.config.seed)
        if stage in ("stage2", "stage3"):
            mlm = self.config.mlm
            if not mlm.whole_word_masking:
                raise ValueError("only whole-word masking is implemented (mlm.whole_word_masking must be true)")
            return WholeWordMaskCollator(
                self.tokenizer,
                mlm_probability=mlm.mlm_probability,
                budget_over_padded_length=mlm.budget_over_padded_length,
                seed=self.config.seed,
            )
        return collate

    # --------------------------------------------------------------------------------------- lightning
    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = self.build_train_dataset()
            if len(self.train_dataset) < self.data.batch_size:
                raise ValueError(
                    f"{self.config.name}: the training set has {len(self.train_dataset)} samples, fewer than one "
                    f"batch of {self.data.batch_size} (last partial batches are dropped)"
                )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, seeded, last partial batch dropped. In one process without workers a
        :class:`~vlmo_pipeline.training.sampling.ResumableDataLoader` (same batches; resumes exactly), else a plain
        ``DataLoader`` (Lightning swaps in a ``DistributedSampler`` for several devices)."""
        self.setup("fit")
        generator = torch.Generator().manual_seed(self.config.seed)
        trainer = self.config.trainer
        if self.data.num_workers == 0 and trainer.devices * trainer.num_nodes == 1:
            collate_fn = self.train_collate_fn()
            loader = ResumableDataLoader(
                self.train_dataset,
                batch_size=self.data.batch_size,
                generator=generator,
                collate_fn=collate_fn,
                generator_fn=_collate_generator_fn(collate_fn),
                seed=self.config.seed,
            )
            self.train_sampler = loader.resumable_sampler
            return loader
        self.train_sampler = None
        return DataLoader(
            self.train_dataset,
            batch_size=self.data.batch_size,
            shuffle=True,
            drop_last=True,
            generator=generator,
            num_workers=self.data.num_workers,
            persistent_workers=self.data.num_workers > 0,
            collate_fn=self.train_collate_fn(),
        )
