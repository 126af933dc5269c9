"""Exact resume: a training data loader and a callback whose state Lightning saves in ``last.ckpt``.

A stage killed at any point and re-run continues bit-identically (CPU, deterministic settings) to a run that was
never interrupted. What has to be put back is everything random or positional that a plain ``DataLoader`` loses:

* the **sampler position**: :class:`ResumableRandomSampler` draws exactly what ``RandomSampler(generator=g)``
  draws (same permutations from the same generator, so the batches of a run are unchanged), remembers the
  generator state at the start of every epoch, and on resume regenerates the epoch's permutation and skips the
  batches already trained;
* the **masking RNG** of the collator (the MIM block masks, the whole-word MLM masks): :class:`RecordingCollate`
  keeps the generator state before each batch it collates, so the state *before the first untrained batch* is
  saved even though Lightning has already prefetched (and collated) that batch when the checkpoint is written;
* the **global RNGs** (torch, CUDA, numpy, ``random``: dropout, drop-path, ITM negative sampling):
  :class:`ResumeStateCallback` saves them with the checkpoint and puts them back just before the first resumed
  training step;
* the **augmentation RNG**: items are read under a private torch RNG stream (:class:`PrivateRNGDataset`), whose
  state before the first untrained batch is saved too (the transforms would otherwise draw from the global RNG
  while a batch is prefetched, interleaved with the training step's draws).

:class:`ResumableDataLoader` exposes ``state_dict`` / ``load_state_dict``, which makes it "stateful" for
Lightning 2.x: the fit loop saves its state in the checkpoint (``loops.fit_loop.state_dict.combined_loader``) and
loads it into the loader before iterating when a run resumes (no "dataloader is not resumable" warning).

Limit: one process with ``num_workers: 0`` (dataset and collator then run in the training process; with workers or
several devices :mod:`~vlmo_pipeline.training.datamodules` keeps a plain ``DataLoader``: resume then restarts the
epoch's data order, and the transforms draw from each worker's RNG).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    "ResumableRandomSampler",
    "PrivateRNGDataset",
    "RecordingCollate",
    "ResumableDataLoader",
    "ResumeStateCallback",
]

STATE_VERSION = 1
_HISTORY = 8  # collator states kept (Lightning prefetches one batch)
_DATA_SEED_OFFSET = 0x5EED  # the item-reading stream must not be the sampler's (same seed, same MT19937 stream)


class ResumableRandomSampler(Sampler[int]):
    """``RandomSampler(range(num_samples), generator=generator)`` that can resume mid-epoch (see module docstring).

    ``trained`` counts the batches trained since the run started (advanced by :class:`ResumeStateCallback`);
    ``batch_size`` is the loader's batch size (the skip on resume is ``batches × batch_size`` indices).
    """

    def __init__(self, num_samples: int, generator: torch.Generator, batch_size: int, drop_last: bool = True) -> None:
        self.num_samples = num_samples
        self.generator = generator
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.trained = 0
        self.epoch_start_batch = 0
        self.epoch_start_state: torch.Tensor | None = None
        self._pending: tuple[torch.Tensor, int] | None = None

    @property
    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (0 if self.drop_last or not rest else 1)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._pending is not None:
            state, skip = self._pending
            self._pending = None
            self.generator.set_state(state)
        self.epoch_start_state = self.generator.get_state()
        self.epoch_start_batch = self.trained - skip // self.batch_size
        yield from torch.randperm(self.num_samples, generator=self.generator).tolist()[skip:]
        # RandomSampler draws a second permutation for the (empty) remainder slice: draw it too, so the generator
        # stream (and every later epoch's order) is that of RandomSampler.
        torch.randperm(self.num_samples, generator=self.generator)

    def state_dict(self) -> dict[str, Any]:
        done = self.trained - self.epoch_start_batch
        if self.epoch_start_state is not None and done < self.batches_per_epoch:
            return {"epoch_start_state": self.epoch_start_state.clone(), "skip_batches": done}
        return {"generator_state": self.generator.get_state()}  # between epochs: the next one draws afresh

    def load_state_dict(self, state: dict[str, Any], trained: int) -> None:
        self.trained = trained
        if "epoch_start_state" in state:
            self._pending = (state["epoch_start_state"], int(state["skip_batches"]) * self.batch_size)
        else:
            self._pending = None
            self.generator.set_state(state["generator_state"])


class PrivateRNGDataset(Dataset):
    """``dataset`` whose items are read with a private torch RNG stream instead of the global one.

    The image transforms (random crop, RandAugment, flip) draw from torch's global RNG, and with ``num_workers: 0``
    they run while Lightning prefetches the next batch, i.e. interleaved with the training step's own draws
    (dropout, drop-path, ITM negatives): no checkpoint could hold "the" global state for both. Reading items
    under a stream of their own (seeded from the run's seed) separates the two, so both can be saved and restored.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.rng_state = torch.Generator().manual_seed(seed + _DATA_SEED_OFFSET).get_state()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        try:
            return self.dataset[index]
        finally:
            self.rng_state = torch.get_rng_state()
            torch.set_rng_state(outer)


class RecordingCollate:
    """Wrap a collate function whose randomness comes from one private generator (``generator_fn()``, or none).

    Records the generator state before each batch, so :meth:`state_before` can give the state before any of the
    last few batches (the first untrained one when a checkpoint is written)."""

    def __init__(
        self,
        inner: Callable[[Sequence[Any]], Any],
        generator_fn: Callable[[], Any] | None,
        dataset: PrivateRNGDataset | None = None,
    ) -> None:
        self.inner = inner
        self.generator_fn = generator_fn
        self.dataset = dataset
        self.count = 0
        self.history: dict[int, torch.Tensor] = {}
        #: item-reading RNG state before batch n (recorded after batch n - 1 is collated: its items are read by then)
        self.data_history: dict[int, torch.Tensor] = {0: dataset.rng_state.clone()} if dataset is not None else {}

    def _generator(self) -> torch.Generator | None:
        return self.generator_fn() if self.generator_fn is not None else None

    def __call__(self, items: Sequence[Any]) -> Any:
        generator = self._generator()
        if generator is not None:
            self.history[self.count] = generator.get_state()
            for old in [key for key in self.history if key <= self.count - _HISTORY]:
                del self.history[old]
        self.count += 1
        if self.dataset is not None:
            self.data_history[self.count] = self.dataset.rng_state.clone()
            for old in [key for key in self.data_history if key <= self.count - _HISTORY]:
                del self.data_history[old]
        return self.inner(items)

    def data_state_before(self, batch_number: int) -> torch.Tensor | None:
        if self.dataset is None:
            return None
        if batch_number not in self.data_history:
            raise RuntimeError(f"item RNG state before batch {batch_number} is no longer known (at {self.count})")
        return self.data_history[batch_number].clone()

    def state_before(self, batch_number: int) -> torch.Tensor | None:
        generator = self._generator()
        if generator is None:
            return None
        if batch_number in self.history:
            return self.history[batch_number].clone()
        if batch_number == self.count:  # not collated yet: the generator is where that batch will start
            return generator.get_state()
        raise RuntimeError(f"collator state before batch {batch_number} is no longer known (at {self.count})")

    def restore(self, state: torch.Tensor | None, count: int, data_state: torch.Tensor | None = None) -> None:
        self.count, self.history = count, {}
        generator = self._generator()
        if generator is not None and state is not None:
            generator.set_state(state)
        if self.dataset is not None and data_state is not None:
            self.dataset.rng_state = data_state.clone()
            self.data_history = {count: data_state.clone()}


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableRandomSampler` and a :class:`RecordingCollate` with
    ``state_dict`` / ``load_state_dict`` (Lightning saves and restores it with the fit loop). With ``seed`` the
    items are read under a private RNG stream (:class:`PrivateRNGDataset`), saved and restored as well."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        generator: torch.Generator,
        collate_fn: Callable[[Sequence[Any]], Any],
        generator_fn: Callable[[], Any] | None = None,
        seed: int | None = None,
    ) -> None:
        sampler = ResumableRandomSampler(len(dataset), generator, batch_size, drop_last=True)
        private = PrivateRNGDataset(dataset, seed) if seed is not None else None
        recording = RecordingCollate(collate_fn, generator_fn, private)
        super().__init__(
            private if private is not None else dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=True,
            generator=generator,  # DataLoader draws its base seed from it each epoch, as with shuffle=True
            num_workers=0,
            collate_fn=recording,
        )
        self.resumable_sampler = sampler
        self.recording_collate = recording

    def state_dict(self) -> dict[str, Any]:
        trained = self.resumable_sampler.trained
        return {
            "version": STATE_VERSION,
            "trained_batches": trained,
            "sampler": self.resumable_sampler.state_dict(),
            "collate_generator": self.recording_collate.state_before(trained),
            "data_rng": self.recording_collate.data_state_before(trained),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown training data loader state version {state.get('version')!r}")
        trained = int(state["trained_batches"])
        self.resumable_sampler.load_state_dict(state["sampler"], trained)
        self.recording_collate.restore(state["collate_generator"], trained, state.get("data_rng"))


def _global_rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / ``random`` states as tensors and plain Python values (``weights_only`` loadable)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position)},
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "random": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": python_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state, (has_gauss, gauss) = state["numpy"], state["numpy_gauss"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy_state["kind"], keys, numpy_state["pos"], has_gauss, gauss))
    python = state["random"]
    random.setstate((python["version"], tuple(int(value) for value in python["state"].tolist()), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeStateCallback(Callback):
    """Counts trained batches for the :class:`ResumableRandomSampler` and saves / restores the global RNGs.

    ``sampler_fn()`` returns the run's sampler (``None`` for a plain loader). The RNG states saved with a checkpoint
    are put back at the start of the first training batch after a resume, i.e. at the same point of the run."""

    def __init__(self, sampler_fn: Callable[[], ResumableRandomSampler | None]) -> None:
        super().__init__()
        self.sampler_fn = sampler_fn
        self._pending_rng: dict[str, Any] | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._pending_rng is not None:
            _set_global_rng_state(self._pending_rng)
            self._pending_rng = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        sampler = self.sampler_fn()
        if sampler is not None:
            sampler.trained += 1

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "rng": _global_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("version") == STATE_VERSION:
            self._pending_rng = state_dict["rng"]
