"""SBU Captions: ``sbu-captions-all.json`` plus the images users download with img2dataset.

``<root>/sbu-captions-all.json`` is ``{"image_urls": [...], "user_ids": [...], "captions": [...]}`` (parallel
lists); it is validated (same lengths) and counted into the manifest when present. Rows come from the
img2dataset output in ``<root>/images/`` (files or webdataset layout); single split ``train``.

Since the file is only validated and counted, :func:`count_sbu_json` does that in one streaming ``ijson`` pass
that counts the items of each list without building any of them (constant memory; zipping the three parallel
lists into records would need one pass per list plus buffering, and nothing here needs the records).
"""

from __future__ import annotations

from pathlib import Path

from vlmo_pipeline.data.raw.img2dataset import count_samples, iter_img2dataset, require_shards
from vlmo_pipeline.data.raw.records import RawLayoutError, RawSource, load_json
from vlmo_pipeline.data.raw.safe_io import json_prefix_kinds

SBU_JSON_NAME = "sbu-captions-all.json"
SBU_EXPECTED = '{"image_urls": [...], "user_ids": [...], "captions": [...]} (parallel lists)'


def load_sbu_json(path: str | Path) -> dict[str, list]:
    """Parse ``sbu-captions-all.json`` whole and check it holds three parallel lists of equal length (holds the
    document in memory; the reader itself only uses :func:`count_sbu_json`)."""
    path = Path(path)
    document = load_json(path, SBU_EXPECTED)
    keys = ("image_urls", "user_ids", "captions")
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list) for key in keys):
        raise RawLayoutError(path, f"expected {SBU_EXPECTED}")
    lengths = {key: len(document[key]) for key in keys}
    if len(set(lengths.values())) != 1:
        raise RawLayoutError(path, f"parallel lists differ in length: {lengths}")
    return {key: document[key] for key in keys}


def count_sbu_json(path: str | Path) -> dict[str, int]:
    """Lengths of the three parallel lists of ``sbu-captions-all.json``, in one constant-memory streaming pass;
    RawLayoutError for invalid JSON (with the byte offset), a missing/non-list key or unequal lengths."""
    path = Path(path)
    keys = ("image_urls", "user_ids", "captions")
    kinds = json_prefix_kinds(path, ("", *keys), SBU_EXPECTED)
    if kinds.get("") != "start_map" or not all(kinds.get(key) == "start_array" for key in keys):
        raise RawLayoutError(path, f"expected {SBU_EXPECTED}")
    lengths = {key: kinds[f"{key}#count"] for key in keys}
    if len(set(lengths.values())) != 1:
        raise RawLayoutError(path, f"parallel lists differ in length: {lengths}")
    return lengths


def open_sbu(
    root: str | Path,
    *,
    max_caption_chars: int,
    captions_file: str | Path | None = None,
    image_dir: str | Path | None = None,
    allow_outside_symlinks: bool = False,
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
        info["annotation_entries"] = count_sbu_json(annotation)["captions"]
        sources.append(str(annotation))
    elif captions_file:
        raise RawLayoutError(annotation, f"missing SBU captions file (given explicitly; {SBU_EXPECTED})")
    return RawSource(
        iter_img2dataset(images, "train", max_caption_chars, allow_outside_symlinks),
        ("train",),
        sources,
        total=count_samples(images),
        info=info,
    )
