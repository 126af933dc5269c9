"""Image controls of the evaluation: does a fused model use its image?

A fused task is scored a second (and third) time on the same test set with the images taken away from the text:

* **shuffled images**: every question / statement is paired with the image (pair) of another test example, by a
  seeded permutation without fixed points (:func:`derangement`). It permutes *images*, not samples: all
  questions that share an image move together to one other image (:func:`derange_groups`), so no question ever
  gets its own image back even though several questions share one.
* **blank images**: every image is replaced by a mid-grey image (pixel value 0.5 in every channel) of the same
  size, *before* the dataset's transform, so the model sees exactly what the eval transform makes of a grey
  picture (0 after the [-1, 1] normalisation, whatever normalisation the transform uses).

A model that ignores the image scores the same on all three; a model that reads the answer off the image drops
to (or below) the language prior. :func:`with_image_rows` and :func:`with_blank_images` return *copies* of an
Arrow dataset (:mod:`vlmo_pipeline.data.datasets`) whose image loader is replaced; text, labels, targets and
sample order are untouched, so predictions line up with the real run sample by sample. The copies decode only
the substituted image (the blank one decodes nothing but the image header) and pickle for DataLoader workers.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

__all__ = [
    "BLANK_PIXEL_VALUE",
    "derangement",
    "derange_groups",
    "shuffled_row_map",
    "with_image_rows",
    "with_blank_images",
    "with_shuffled_images",
]

#: grey level of the blank control image, on the [0, 1] scale of a decoded image (before normalisation)
BLANK_PIXEL_VALUE = 0.5


def derangement(n: int, seed: int) -> list[int]:
    """A permutation ``p`` of ``range(n)`` with ``p[i] != i`` for every ``i``, drawn uniformly among all such
    permutations from a ``torch.Generator`` seeded with ``seed`` (same seed, same permutation).

    Rejection sampling of ``torch.randperm``: about e ≈ 2.7 draws on average, whatever ``n``. ``n = 0`` gives
    the empty permutation; ``n = 1`` has none and raises ``ValueError``.
    """
    if n < 0:
        raise ValueError(f"derangement: n must be >= 0, got {n}")
    if n == 1:
        raise ValueError("derangement: a single item cannot be moved to another place (need at least 2)")
    generator = torch.Generator().manual_seed(int(seed))
    identity = torch.arange(n)
    while True:
        permutation = torch.randperm(n, generator=generator)
        if not bool((permutation == identity).any()):
            return permutation.tolist()


def derange_groups(keys: Sequence[Hashable], seed: int) -> list[int]:
    """For every position ``i`` of ``keys``, a position ``j`` with ``keys[j] != keys[i]``.

    Positions with equal keys form a group (e.g. the questions of one image); the groups are permuted by
    :func:`derangement` and every member of a group is sent to the first position of its target group, so a
    whole group moves together and never lands on its own key. Raises ``ValueError`` with fewer than two groups.
    """
    group_index: dict[Hashable, int] = {}
    targets: list[int] = []  # first position of every group, in order of appearance
    group_of = []
    for position, key in enumerate(keys):
        if key not in group_index:
            group_index[key] = len(targets)
            targets.append(position)
        group_of.append(group_index[key])
    if len(targets) < 2:
        raise ValueError(
            f"cannot pair examples with other images: the set has {len(targets)} distinct "
            "image(s), at least 2 are needed"
        )
    permutation = derangement(len(targets), seed)
    return [targets[permutation[group]] for group in group_of]


def shuffled_row_map(dataset: Any, seed: int, key_column: str | None = None) -> dict[int, int]:
    """Table row → another table row whose image replaces it, over the rows ``dataset`` has samples of.

    Rows with the same value in ``key_column`` (e.g. ``image_id``: one image stored in several rows) count as one
    image and never receive each other's image; without the column every row is its own image.
    """
    rows = sorted(set(int(row) for row in np.asarray(dataset.row_of_sample).tolist()))
    table = dataset.table
    if key_column is not None and table.has_column(key_column):
        keys: list[Hashable] = [table.value(row, key_column) for row in rows]
    else:
        keys = rows
    targets = derange_groups(keys, seed)
    return {row: rows[target] for row, target in zip(rows, targets)}


class _SubstituteRows:
    """Image loader of a controlled copy: loads the image of ``row_map[row]`` from the original dataset."""

    def __init__(self, original: Any, row_map: dict[int, int]) -> None:
        self.original = original
        self.row_map = row_map

    def __call__(self, row: int, column: str = "image") -> torch.Tensor:
        return self.original._load_image(self.row_map[int(row)], column)


class _BlankImage:
    """Image loader of a controlled copy: a mid-grey image of the stored image's size, through the transform."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def __call__(self, row: int, column: str = "image") -> torch.Tensor:
        data = self.original.table.value(row, column)
        try:
            with Image.open(io.BytesIO(data or b"")) as header:  # reads the header only, decodes no pixel
                width, height = header.size
        except (OSError, ValueError):  # let the original loader raise its located error
            return self.original._load_image(row, column)
        grey = tv_tensors.Image(torch.full((3, height, width), BLANK_PIXEL_VALUE, dtype=torch.float32))
        if self.original.transform is None:
            raise ValueError(f"{type(self.original).__name__} needs a transform to turn images into tensors")
        return self.original.transform(grey)


def _copy_with_loader(dataset: Any, loader: Any) -> Any:
    if not callable(getattr(dataset, "_load_image", None)) or not hasattr(dataset, "table"):
        raise TypeError(f"{type(dataset).__name__} is not an Arrow dataset of vlmo_pipeline.data.datasets")
    controlled = copy.copy(dataset)
    controlled._load_image = loader  # instance attribute: __getitem__'s self._load_image(...) calls it
    return controlled


def with_image_rows(dataset: Any, row_map: dict[int, int]) -> Any:
    """A copy of ``dataset`` whose samples of table row ``r`` carry the image(s) of row ``row_map[r]`` (every
    image column: ``image``, or ``image_0`` and ``image_1``); everything else is the original sample."""
    return _copy_with_loader(dataset, _SubstituteRows(dataset, dict(row_map)))


def with_shuffled_images(dataset: Any, seed: int, key_column: str | None = "image_id") -> tuple[Any, dict[int, int]]:
    """``with_image_rows(dataset, shuffled_row_map(dataset, seed, key_column))`` and the row map it used."""
    row_map = shuffled_row_map(dataset, seed, key_column)
    return with_image_rows(dataset, row_map), row_map


def with_blank_images(dataset: Any) -> Any:
    """A copy of ``dataset`` whose every image is mid-grey (:data:`BLANK_PIXEL_VALUE`) before the transform."""
    return _copy_with_loader(dataset, _BlankImage(dataset))
