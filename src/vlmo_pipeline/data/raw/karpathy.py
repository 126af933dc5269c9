"""Karpathy caption-split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``).

Layout: ``{"images": [{"filename", "split", "sentences": [{"raw", "tokens", ...}], "filepath"?, "cocoid"?,
"imgid"?, ...}], "dataset": ...}``. COCO entries carry ``filepath`` (``train2014``/``val2014``); Flickr entries do
not (their images sit in one folder). Rows keep the file's order, which is the official one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from vlmo_pipeline.data.raw.records import (
    MALFORMED_RECORD,
    NO_CAPTIONS,
    PATH_ESCAPES_ROOT,
    ImageSource,
    PathEscapesRootError,
    RawItem,
    RawLayoutError,
    RawRecord,
    Reject,
    check_captions,
    load_json,
    safe_join_str,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import iter_json_items, json_prefix_kinds

KARPATHY_EXPECTED = '{"images": [{"filename", "split", "sentences": [{"raw", ...}], ...}, ...]}'


class KarpathyEntries:
    """The ``images`` entries of a Karpathy file, re-streamed from disk on each iteration; ``len`` = entry count."""

    def __init__(self, path: Path, count: int):
        self.path = Path(path)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator:
        return iter_json_items(self.path, "images.item", KARPATHY_EXPECTED)


def open_karpathy_entries(path: Path) -> KarpathyEntries:
    """Check a Karpathy split file in one streaming pass (syntax, ``images`` is a list) and count its entries.

    A syntax error raises :class:`RawLayoutError` with the byte offset and entry index; so does a document whose
    ``images`` is missing or not a list. Memory stays constant whatever the file size.
    """
    path = Path(path)
    count = sum(1 for _ in iter_json_items(path, "images.item", KARPATHY_EXPECTED))
    if count == 0:  # an empty list, or no "images" list at all: look at the layout (cheap for a file this empty)
        kinds = json_prefix_kinds(path, ("", "images"), KARPATHY_EXPECTED)
        if kinds.get("") != "start_map" or kinds.get("images") != "start_array":
            found = "keys without an images list" if kinds.get("") == "start_map" else f"a JSON {kinds.get('')}"
            raise RawLayoutError(path, f"expected a Karpathy split file {KARPATHY_EXPECTED}, found {found}")
    return KarpathyEntries(path, count)


def load_karpathy(path: Path) -> list[dict]:
    """Parse a Karpathy split file whole and return its ``images`` list; wrong top-level layout → RawLayoutError.

    Holds the whole document in memory; the readers use :func:`open_karpathy_entries` instead.
    """
    document = load_json(path, KARPATHY_EXPECTED)
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        found = type(document).__name__ if not isinstance(document, dict) else f"keys {sorted(document)[:5]}"
        raise RawLayoutError(path, f"expected a Karpathy split file {KARPATHY_EXPECTED}, found {found}")
    return document["images"]


def iter_karpathy_records(
    entries: Iterable[dict],
    annotation_path: Path,
    image_root: Path,
    max_caption_chars: int,
    use_filepath: bool,
    allowed_splits: tuple[str, ...],
) -> Iterator[RawItem]:
    """Yield one caption record per image entry (file order) plus per-caption and per-entry rejects.

    ``use_filepath``: resolve images at ``<image_root>/<filepath>/<filename>`` (COCO) instead of
    ``<image_root>/<filename>`` (Flickr).
    """
    source = str(annotation_path)
    root = str(Path(image_root))  # once per source, normalised as Path does: the per-record join is string work
    for index, entry in enumerate(entries):
        record_id = f"images[{index}]"
        if not isinstance(entry, dict):
            yield Reject(record_id, source, MALFORMED_RECORD, f"entry is {type(entry).__name__}, not an object")
            continue
        filename = entry.get("filename")
        split = entry.get("split")
        sentences = entry.get("sentences")
        filepath = entry.get("filepath") if use_filepath else None
        if not isinstance(filename, str) or not isinstance(split, str) or not isinstance(sentences, list):
            yield Reject(record_id, source, MALFORMED_RECORD, "needs string filename, string split, list sentences")
            continue
        if use_filepath and not isinstance(filepath, str):
            yield Reject(filename, source, MALFORMED_RECORD, "COCO Karpathy entry needs a string filepath")
            continue
        record_id = filename
        if split not in allowed_splits:
            yield Reject(record_id, source, MALFORMED_RECORD, f"split {split!r} is not one of {allowed_splits}")
            continue
        try:
            parts = (filepath, filename) if use_filepath else (filename,)
            image_path = safe_join_str(root, *parts)
        except PathEscapesRootError as error:
            yield Reject(record_id, source, PATH_ESCAPES_ROOT, str(error), split=split)
            continue
        raw_texts = [s.get("raw") if isinstance(s, dict) else None for s in sentences]
        captions, rejects = check_captions(raw_texts, record_id, source, max_caption_chars)
        yield from tag_split(rejects, split)
        if not captions:
            yield Reject(record_id, source, NO_CAPTIONS, "no valid caption left for this image", split=split)
            continue
        yield RawRecord(
            record_id=record_id,
            split=split,
            source=source,
            fields={"caption": captions, "image_id": filename, "split": split},
            images={"image": ImageSource(image_path, root=root)},
        )
