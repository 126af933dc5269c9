"""Flickr30K (and Flickr8K, same schema) captions from the Karpathy split file.

``<root>/karpathy/dataset_flickr30k.json`` (``images[].{filename, imgid, split, sentences[].raw}``, no
``filepath``) and images in ``<root>/flickr30k-images/<filename>``. Splits train/val/test, file order.
"""

from __future__ import annotations

from pathlib import Path

from vlmo_pipeline.data.raw.karpathy import iter_karpathy_records, open_karpathy_entries
from vlmo_pipeline.data.raw.records import RawLayoutError, RawSource

F30K_SPLITS = ("train", "val", "test")


def open_f30k(
    root: str | Path,
    *,
    max_caption_chars: int,
    karpathy_file: str | Path | None = None,
    image_dir: str | Path | None = None,
) -> RawSource:
    """Parse the Flickr Karpathy file and return a streaming :class:`RawSource`.

    ``karpathy_file`` overrides ``<root>/karpathy/dataset_flickr30k.json`` (e.g. a ``dataset_flickr8k.json``);
    ``image_dir`` overrides ``<root>/flickr30k-images``. Image file names must stay inside ``image_dir``.
    """
    root = Path(root)
    karpathy_path = Path(karpathy_file) if karpathy_file else root / "karpathy" / "dataset_flickr30k.json"
    if not karpathy_path.is_file():
        raise RawLayoutError(karpathy_path, "missing Karpathy split file (images[].{filename, split, sentences})")
    images = Path(image_dir) if image_dir else root / "flickr30k-images"
    entries = open_karpathy_entries(karpathy_path)
    items = iter_karpathy_records(
        entries, karpathy_path, images, max_caption_chars, use_filepath=False, allowed_splits=F30K_SPLITS
    )
    return RawSource(items, F30K_SPLITS, [str(karpathy_path), str(images)], total=len(entries))
