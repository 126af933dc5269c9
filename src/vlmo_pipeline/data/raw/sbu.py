"""SBU Captions: ``sbu-captions-all.json`` plus the images users download with img2dataset.

``<root>/sbu-captions-all.json`` is ``{"image_urls": [...], "user_ids": [...], "captions": [...]}`` (parallel
lists); it is validated (same lengths) and counted into the manifest when present. Rows come from the
img2dataset output in ``<root>/images/`` (files or webdataset layout); single split ``train``.
"""

from __future__ import annotations

from pathlib import Path

from vlmo_pipeline.data.raw.img2dataset import count_samples, iter_img2dataset, require_shards
from vlmo_pipeline.data.raw.records import RawLayoutError, RawSource, load_json

SBU_JSON_NAME = "sbu-captions-all.json"
SBU_EXPECTED = '{"image_urls": [...], "user_ids": [...], "captions": [...]} (parallel lists)'


def load_sbu_json(path: str | Path) -> dict[str, list]:
    """Parse ``sbu-captions-all.json`` and check it holds three parallel lists of equal length."""
    path = Path(path)
    document = load_json(path, SBU_EXPECTED)
    keys = ("image_urls", "user_ids", "captions")
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list) for key in keys):
        raise RawLayoutError(path, f"expected {SBU_EXPECTED}")
    lengths = {key: len(document[key]) for key in keys}
    if len(set(lengths.values())) != 1:
        raise RawLayoutError(path, f"parallel lists differ in length: {lengths}")
    return {key: document[key] for key in keys}


def open_sbu(
    root: str | Path,
    *,
    max_caption_chars: int,
    captions_file: str | Path | None = None,
    image_dir: str | Path | None = None,
) -> RawSource:
    """Find SBU's img2dataset folder under ``root`` and return a streaming :class:`RawSource`."""
    root = Path(root)
    images = Path(image_dir) if image_dir else root / "images"
    if not images.is_dir():
        raise RawLayoutError(images, "no SBU image folder: expected img2dataset output (files or webdataset)")
    require_shards(images)
    annotation = Path(captions_file) if captions_file else root / SBU_JSON_NAME
    info = {}
    sources = [str(images)]
    if annotation.is_file():
        info["annotation_entries"] = len(load_sbu_json(annotation)["captions"])
        sources.append(str(annotation))
    elif captions_file:
        raise RawLayoutError(annotation, f"missing SBU captions file (given explicitly; {SBU_EXPECTED})")
    return RawSource(iter_img2dataset(images, "train", max_caption_chars), ("train",), sources,
                     total=count_samples(images), info=info)
