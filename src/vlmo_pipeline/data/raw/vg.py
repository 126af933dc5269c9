"""Visual Genome region descriptions: one row per image, ``caption`` = the image's region phrases.

Files (at ``<root>/`` or, as the official writer expects, ``<root>/annotations/``): ``image_data.json`` (list of
``{image_id, url, width, height, coco_id, flickr_id}``) and ``region_descriptions.json`` (list of
``{"id": image_id, "regions": [{region_id, image_id, phrase, x, y, width, height}]}``). The image lives at
``<root>/<last two url path parts>`` (e.g. ``VG_100K_2/1.jpg``; ``<root>/images/...`` is accepted too).
Rows are sorted by image id; phrases keep the file's order. ``image_id`` is the decimal image id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

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
    first_existing,
    safe_join,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import iter_json_items, json_prefix_kinds


def _find(root: Path, name: str) -> Path:
    found = first_existing([root / name, root / "annotations" / name])
    if found is None:
        raise RawLayoutError(root / name, f"missing required Visual Genome file {name} (also looked in annotations/)")
    return found


def load_image_data(path: Path) -> tuple[dict[int, str], list[Reject]]:
    """Map image id → url from ``image_data.json`` (streamed); malformed entries become rejects."""
    expected = "a JSON list of {image_id, url, width, height, ...}"
    urls: dict[int, str] = {}
    rejects = []
    index = -1
    for index, entry in enumerate(iter_json_items(path, "item", expected)):
        # VG v1.0 used "id" instead of "image_id"; accept both.
        image_id = entry.get("image_id", entry.get("id")) if isinstance(entry, dict) else None
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or not isinstance(url, str):
            rejects.append(Reject(f"[{index}]", str(path), MALFORMED_RECORD, "needs integer image_id and url"))
            continue
        urls[image_id] = url
    if index < 0:
        _require_top_list(path, expected)
    return urls, rejects


def _require_top_list(path: Path, expected: str) -> None:
    if json_prefix_kinds(path, ("",), expected).get("") != "start_array":
        raise RawLayoutError(path, f"expected {expected}")


def load_region_descriptions(path: Path) -> tuple[dict[int, list], list[Reject]]:
    """Map image id → its region phrases from ``region_descriptions.json``; malformed entries become rejects.

    Streamed (the official file is ~700 MB of JSON); of each region only its ``phrase`` is kept (None for a region
    that is not an object, so it still counts as a rejected caption)."""
    expected = 'a JSON list of {"id": image_id, "regions": [{phrase, ...}]}'
    regions: dict[int, list] = {}
    rejects = []
    index = -1
    for index, entry in enumerate(iter_json_items(path, "item", expected)):
        if not isinstance(entry, dict) or not isinstance(entry.get("regions"), list):
            rejects.append(Reject(f"[{index}]", str(path), MALFORMED_RECORD, 'needs a "regions" list'))
            continue
        image_id = entry.get("id")
        if not isinstance(image_id, int) and entry["regions"]:
            image_id = entry["regions"][0].get("image_id") if isinstance(entry["regions"][0], dict) else None
        if not isinstance(image_id, int):
            rejects.append(Reject(f"[{index}]", str(path), MALFORMED_RECORD, "no integer image id"))
            continue
        regions.setdefault(image_id, []).extend(
            region.get("phrase") if isinstance(region, dict) else None for region in entry["regions"]
        )
    if index < 0:
        _require_top_list(path, expected)
    return regions, rejects


def _image_parts(url: str) -> tuple[str, str]:
    parts = [part for part in urlparse(url).path.split("/") if part != ""]
    if len(parts) < 2:
        raise PathEscapesRootError(f"url {url!r} has fewer than two path parts")
    return parts[-2], parts[-1]


def open_vg(root: str | Path, *, max_caption_chars: int) -> RawSource:
    """Parse Visual Genome region descriptions under ``root`` and return a streaming :class:`RawSource`."""
    root = Path(root)
    image_data_path = _find(root, "image_data.json")
    regions_path = _find(root, "region_descriptions.json")
    urls, image_rejects = load_image_data(image_data_path)
    regions, region_rejects = load_region_descriptions(regions_path)
    return RawSource(
        tag_split(
            _iter_vg(
                root, urls, regions, image_rejects + region_rejects, image_data_path, regions_path, max_caption_chars
            ),
            "train",
        ),
        ("train",),
        [str(image_data_path), str(regions_path)],
        total=len(urls),
    )


def _iter_vg(
    root: Path,
    urls: dict[int, str],
    regions: dict[int, list],
    parse_rejects: list[Reject],
    image_data_path: Path,
    regions_path: Path,
    max_caption_chars: int,
) -> Iterator[RawItem]:
    yield from parse_rejects
    for image_id in sorted(set(regions) - set(urls)):
        yield Reject(
            str(image_id),
            str(regions_path),
            UNKNOWN_ID,
            f"region descriptions for an image id not in {image_data_path.name}",
        )
    for image_id in sorted(urls):
        record_id = str(image_id)
        phrases = regions.get(image_id, [])
        captions, rejects = check_captions(phrases, record_id, str(regions_path), max_caption_chars)
        yield from rejects
        if not captions:
            yield Reject(record_id, str(regions_path), NO_CAPTIONS, "image has no valid region phrase")
            continue
        try:
            parts = _image_parts(urls[image_id])
            image_path = safe_join(root, *parts)
        except PathEscapesRootError as error:
            yield Reject(record_id, str(image_data_path), PATH_ESCAPES_ROOT, str(error))
            continue
        if not image_path.exists():
            # The official writer's layout keeps the VG_100K folders under images/.
            alternative = root / "images" / image_path.relative_to(root)
            image_path = alternative if alternative.exists() else image_path
        yield RawRecord(
            record_id=record_id,
            split="train",
            source=str(image_data_path),
            fields={"caption": captions, "image_id": record_id, "split": "train"},
            images={"image": ImageSource(str(image_path), root=str(root))},
        )
