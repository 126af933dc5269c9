"""Conceptual Captions (CC3M): the official TSVs plus the images users download with img2dataset.

* ``<root>/Train_GCC-training.tsv``, ``<root>/Validation_GCC-1.1.0-Validation.tsv``: ``caption<TAB>url`` lines, no
  header. They are validated line by line (a line that is not exactly two non-empty tab-separated fields is a
  ``malformed_line`` reject with its line number, a line that is not UTF-8 an ``invalid_utf8`` one; the file is
  read as bytes and each line decoded on its own, so one bad line never stops the file) and counted into the
  manifest; the rows themselves come from:
* ``<root>/images_train/``, ``<root>/images_val/``: img2dataset output (files or webdataset layout), see
  :mod:`vlmo_pipeline.data.raw.img2dataset`. A split is ingested when its image folder exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.raw.img2dataset import count_samples, iter_img2dataset, require_shards
from vlmo_pipeline.data.raw.records import INVALID_UTF8, MALFORMED_LINE, RawItem, RawLayoutError, RawSource, Reject
from vlmo_pipeline.data.raw.safe_io import decode_line, iter_binary_lines

CC3M_SPLITS = ("train", "val")
TSV_NAMES = {"train": "Train_GCC-training.tsv", "val": "Validation_GCC-1.1.0-Validation.tsv"}
IMAGE_DIR_NAMES = {"train": "images_train", "val": "images_val"}


def iter_tsv(path: str | Path) -> Iterator[tuple[int, str, str] | Reject]:
    """Stream a CC3M TSV: ``(line number, caption, url)`` per good line, a ``malformed_line`` Reject otherwise.

    Line numbers start at 1. A trailing ``\\r`` (Windows line end) is tolerated. A line that is not UTF-8 is an
    ``invalid_utf8`` Reject naming its line; the lines after it are read as usual.
    """
    path = Path(path)
    for line_number, raw in iter_binary_lines(path):
        text, problem = decode_line(raw)
        where = f"{path}:{line_number}"
        if text is None:
            yield Reject(f"{path.name}:{line_number}", where, INVALID_UTF8, problem)
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            yield Reject(
                f"{path.name}:{line_number}",
                where,
                MALFORMED_LINE,
                f"expected caption<TAB>url, found {len(fields)} tab-separated field(s)",
            )
        elif not fields[0].strip() or not fields[1].strip():
            yield Reject(f"{path.name}:{line_number}", where, MALFORMED_LINE, "empty caption or url field")
        else:
            yield line_number, fields[0], fields[1]


def open_cc3m(
    root: str | Path,
    *,
    max_caption_chars: int,
    tsv_files: dict[str, str | Path] | None = None,
    image_dirs: dict[str, str | Path] | None = None,
    allow_outside_symlinks: bool = False,
) -> RawSource:
    """Find CC3M's img2dataset folders (and TSVs) under ``root``; return a streaming :class:`RawSource`.

    ``tsv_files`` / ``image_dirs`` map split → path and override the default names.
    """
    root = Path(root)
    tsvs = {
        split: Path(tsv_files[split]) if tsv_files and split in tsv_files else root / name
        for split, name in TSV_NAMES.items()
    }
    images = {
        split: Path(image_dirs[split]) if image_dirs and split in image_dirs else root / name
        for split, name in IMAGE_DIR_NAMES.items()
    }
    present = [split for split in CC3M_SPLITS if images[split].is_dir()]
    if not present:
        raise RawLayoutError(
            root, "no CC3M image folders: expected img2dataset output in images_train/ and/or images_val/"
        )
    info: dict[str, Any] = {"annotation_lines": {}, "annotation_good_lines": {}}
    sources = []
    total = 0
    for split in present:
        require_shards(images[split])
        sources.append(str(images[split]))
        if tsvs[split].is_file():
            sources.append(str(tsvs[split]))
        counted = count_samples(images[split])
        total = None if counted is None or total is None else total + counted
    return RawSource(
        _iter_cc3m(present, tsvs, images, info, max_caption_chars, allow_outside_symlinks),
        tuple(present),
        sources,
        total=total,
        info=info,
    )


def _iter_cc3m(splits, tsvs, images, info, max_caption_chars, allow_outside_symlinks=False) -> Iterator[RawItem]:
    for split in splits:
        if tsvs[split].is_file():
            lines = good = 0
            for item in iter_tsv(tsvs[split]):
                lines += 1
                if isinstance(item, Reject):
                    yield replace(item, split=split, partial=True)  # an annotation line, not a row
                else:
                    good += 1
            info["annotation_lines"][split] = lines
            info["annotation_good_lines"][split] = good
        yield from iter_img2dataset(images[split], split, max_caption_chars, allow_outside_symlinks)
