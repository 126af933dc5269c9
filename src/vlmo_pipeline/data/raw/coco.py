"""MS-COCO captions: Karpathy split file, or the official ``captions_{train,val}2014.json`` as a fallback.

* Karpathy (preferred, what VLMo trains and evaluates on): ``<root>/karpathy/dataset_coco.json``; images at
  ``<root>/<filepath>/<filename>``; splits train/restval/val/test; rows in the file's order.
* Official captions (used when the Karpathy file is absent): ``<root>/annotations/captions_{train,val}2014.json``;
  split from the file name (train2014 → train, val2014 → val); images at ``<root>/<train2014|val2014>/<file_name>``;
  rows sorted by image id, captions by annotation id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from vlmo_pipeline.data.raw.karpathy import iter_karpathy_records, open_karpathy_entries
from vlmo_pipeline.data.raw.records import (
    MALFORMED_RECORD,
    NO_CAPTIONS,
    PATH_ESCAPES_ROOT,
    UNKNOWN_ID,
    ImageSource,
    PathEscapesRootError,
    RawItem,
    RawLayoutError,
    RawRecord,
    RawSource,
    Reject,
    check_captions,
    safe_join_str,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import iter_json_items, json_prefix_kinds

KARPATHY_SPLITS = ("train", "restval", "val", "test")
OFFICIAL_SPLITS = {"train2014": "train", "val2014": "val"}
OFFICIAL_EXPECTED = '{"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "id", "caption"}], ...}'


def open_coco(
    root: str | Path,
    *,
    max_caption_chars: int,
    karpathy_file: str | Path | None = None,
    captions_files: dict[str, str | Path] | None = None,
) -> RawSource:
    """Parse COCO caption annotations under ``root`` and return a streaming :class:`RawSource`.

    ``karpathy_file`` overrides ``<root>/karpathy/dataset_coco.json``; ``captions_files`` maps an official subset
    name (``train2014``/``val2014``) to a captions JSON, overriding ``<root>/annotations/captions_<subset>.json``.
    """
    root = Path(root)
    karpathy_path = Path(karpathy_file) if karpathy_file else root / "karpathy" / "dataset_coco.json"
    if karpathy_path.is_file():
        entries = open_karpathy_entries(karpathy_path)
        items = iter_karpathy_records(
            entries, karpathy_path, root, max_caption_chars, use_filepath=True, allowed_splits=KARPATHY_SPLITS
        )
        return RawSource(items, KARPATHY_SPLITS, [str(karpathy_path)], total=len(entries))
    if karpathy_file:
        raise RawLayoutError(karpathy_path, "missing Karpathy split file (given explicitly)")

    if captions_files:
        official = {subset: Path(path) for subset, path in captions_files.items()}
    else:
        official = {s: root / "annotations" / f"captions_{s}.json" for s in OFFICIAL_SPLITS}
        official = {subset: path for subset, path in official.items() if path.is_file()}
    if not official:
        raise RawLayoutError(
            root,
            "no COCO caption annotations: expected karpathy/dataset_coco.json or "
            "annotations/captions_train2014.json / annotations/captions_val2014.json",
        )
    parsed = {}
    for subset, path in sorted(official.items()):
        if subset not in OFFICIAL_SPLITS:
            raise RawLayoutError(path, f"unknown COCO subset {subset!r}; expected one of {sorted(OFFICIAL_SPLITS)}")
        parsed[subset] = (path, load_official_captions(path))
    total = sum(len(file_names) for _, (file_names, _, _) in parsed.values())
    splits = tuple(OFFICIAL_SPLITS[s] for s in sorted(parsed))
    return RawSource(
        _iter_official(root, parsed, max_caption_chars),
        splits,
        [str(path) for path, _ in parsed.values()],
        total=total,
        info={"annotation_format": "official_captions"},
    )


def load_official_captions(path: Path) -> tuple[dict[int, str], dict[int, list[tuple[int, object]]], list[Reject]]:
    """Parse an official COCO captions file.

    Returns ``(file name by image id, [(annotation id, caption)] by image id, rejects)``; annotations whose
    ``image_id`` is not among ``images`` are rejected as ``unknown_id``. Streamed with ``ijson`` (one pass for
    ``images``, one for ``annotations``); only the file names and (annotation id, caption) pairs are kept.
    """
    source = str(path)
    rejects: list[Reject] = []
    file_names: dict[int, str] = {}
    seen = {"images": False, "annotations": False}
    for index, image in enumerate(iter_json_items(path, "images.item", OFFICIAL_EXPECTED)):
        seen["images"] = True
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("id"), int)
            or not isinstance(image.get("file_name"), str)
        ):
            rejects.append(Reject(f"images[{index}]", source, MALFORMED_RECORD, "needs integer id and file_name"))
            continue
        file_names[image["id"]] = image["file_name"]
    captions: dict[int, list[tuple[int, object]]] = defaultdict(list)
    for index, annotation in enumerate(iter_json_items(path, "annotations.item", OFFICIAL_EXPECTED)):
        seen["annotations"] = True
        if not isinstance(annotation, dict) or not isinstance(annotation.get("image_id"), int):
            rejects.append(Reject(f"annotations[{index}]", source, MALFORMED_RECORD, "needs integer image_id"))
            continue
        annotation_id = annotation.get("id", index)
        if annotation["image_id"] not in file_names:
            rejects.append(
                Reject(f"annotation {annotation_id}", source, UNKNOWN_ID, f"image_id {annotation['image_id']}")
            )
            continue
        captions[annotation["image_id"]].append((annotation_id, annotation.get("caption")))
    if not all(seen.values()):  # an empty list, or no list at all: check the layout
        kinds = json_prefix_kinds(path, ("", "images", "annotations"), OFFICIAL_EXPECTED)
        if (
            kinds.get("") != "start_map"
            or kinds.get("images") != "start_array"
            or kinds.get("annotations") != "start_array"
        ):
            raise RawLayoutError(path, f"expected official COCO captions {OFFICIAL_EXPECTED}")
    return file_names, captions, rejects


def _iter_official(root: Path, parsed: dict, max_caption_chars: int) -> Iterator[RawItem]:
    for subset in sorted(parsed):
        yield from tag_split(
            _iter_official_subset(root, subset, parsed[subset], max_caption_chars), OFFICIAL_SPLITS[subset]
        )


def _iter_official_subset(root: Path, subset: str, parsed_subset: tuple, max_caption_chars: int) -> Iterator[RawItem]:
    path, (file_names, captions_by_image, rejects) = parsed_subset
    source = str(path)
    split = OFFICIAL_SPLITS[subset]
    root_name = str(root)  # once per subset: the per-record join is string work
    yield from rejects
    for image_id in sorted(file_names):
        file_name = file_names[image_id]
        ordered = [caption for _, caption in sorted(captions_by_image.get(image_id, []), key=_annotation_key)]
        captions, caption_rejects = check_captions(ordered, file_name, source, max_caption_chars)
        yield from caption_rejects
        if not captions:
            yield Reject(file_name, source, NO_CAPTIONS, f"image id {image_id} has no valid caption")
            continue
        try:
            image_path = safe_join_str(root_name, subset, file_name)
        except PathEscapesRootError as error:
            yield Reject(file_name, source, PATH_ESCAPES_ROOT, str(error))
            continue
        yield RawRecord(
            record_id=file_name,
            split=split,
            source=source,
            fields={"caption": captions, "image_id": file_name, "split": split},
            images={"image": ImageSource(image_path, root=root_name)},
        )


def _annotation_key(pair: tuple[object, object]) -> tuple[int, object]:
    # Annotation ids are ints in real files; sort robustly (ints first) if a file mixes types.
    annotation_id = pair[0]
    return (0, annotation_id) if isinstance(annotation_id, int) else (1, str(annotation_id))
