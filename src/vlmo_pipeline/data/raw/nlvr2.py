"""NLVR2: JSON-lines sentence files → one row per image pair (spec §6).

Files: ``<root>/{train,dev,test1}.json`` (or under ``<root>/data/``), one JSON object per line with at least
``identifier`` (``{split}-{n}-{k}-{m}``), ``sentence`` and ``label`` ("True"/"False"); train lines also carry
``directory``. The pair id is the identifier minus its last ``-m``; its images are ``<pair id>-img0.png`` and
``-img1.png``, looked up at, in order:

* ``images/<split>/<directory>/`` when the line has a ``directory`` (official train layout),
* ``images/<split>/`` (official dev/test1 layout),
* ``images/<split>/<n>/`` (a directory level for dev/test1, as in the shared excerpt).

Rows keep the order in which pair ids first appear in the file; each row lists the pair's sentences and labels
in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from vlmo_pipeline.data.raw.records import (
    INVALID_UTF8,
    MALFORMED_LINE,
    PATH_ESCAPES_ROOT,
    ImageSource,
    PathEscapesRootError,
    RawItem,
    RawLayoutError,
    RawRecord,
    RawSource,
    Reject,
    as_partial,
    check_caption,
    safe_join,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import decode_line, iter_binary_lines

NLVR2_SPLITS = ("train", "dev", "test1")
LABELS = ("True", "False")


def iter_nlvr2_lines(path: str | Path) -> Iterator[tuple[int, dict] | Reject]:
    """Stream ``(line number, object)`` per well-formed line, a ``malformed_line`` Reject otherwise (an
    ``invalid_utf8`` one for a line that is not UTF-8: lines are decoded one by one, so the file goes on)."""
    path = Path(path)
    for line_number, raw in iter_binary_lines(path):
        where = f"{path}:{line_number}"
        record = f"{path.name}:{line_number}"
        line, problem = decode_line(raw)
        if line is None:
            yield Reject(record, where, INVALID_UTF8, problem)
            continue
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            yield Reject(record, where, MALFORMED_LINE, f"not JSON ({error.msg})")
            continue
        if not isinstance(entry, dict):
            yield Reject(record, where, MALFORMED_LINE, "line is JSON but not an object")
            continue
        identifier = entry.get("identifier")
        if not isinstance(identifier, str) or identifier.count("-") < 3:
            yield Reject(record, where, MALFORMED_LINE, "needs an identifier like dev-850-0-0")
            continue
        if entry.get("label") not in LABELS:
            yield Reject(identifier, where, MALFORMED_LINE, f"label {entry.get('label')!r} is not True/False")
            continue
        yield line_number, entry


def pair_id(identifier: str) -> str:
    """``dev-850-0-3`` → ``dev-850-0`` (the sentence identifier minus its last ``-N``)."""
    return identifier.rsplit("-", 1)[0]


def _find_files(root: Path, files: dict[str, str | Path] | None) -> dict[str, Path]:
    found = {}
    for split in NLVR2_SPLITS:
        if files and split in files:
            path = Path(files[split])
            if not path.is_file():
                raise RawLayoutError(path, f"missing NLVR2 {split} file (given explicitly; JSON lines)")
            found[split] = path
            continue
        for candidate in (root / f"{split}.json", root / "data" / f"{split}.json"):
            if candidate.is_file():
                found[split] = candidate
                break
    if not found:
        raise RawLayoutError(
            root,
            "no NLVR2 sentence file: expected train.json, dev.json and/or test1.json "
            "(JSON lines) in the root or its data/ folder",
        )
    return found


def open_nlvr2(
    root: str | Path,
    *,
    max_caption_chars: int,
    files: dict[str, str | Path] | None = None,
    image_dir: str | Path | None = None,
) -> RawSource:
    """Find NLVR2 sentence files under ``root`` and return a streaming :class:`RawSource`.

    ``files`` maps split → JSON-lines file (overrides the standard names); ``image_dir`` replaces
    ``<root>/images``. The JSON lines are parsed when iteration starts.
    """
    root = Path(root)
    found = _find_files(root, files)
    images = Path(image_dir) if image_dir else root / "images"
    return RawSource(
        _iter_nlvr2(found, images, max_caption_chars),
        tuple(found),
        [str(path) for path in found.values()] + [str(images)],
    )


def _iter_nlvr2(found: dict[str, Path], images: Path, max_caption_chars: int) -> Iterator[RawItem]:
    for split, path in found.items():
        yield from tag_split(_iter_nlvr2_split(split, path, images, max_caption_chars), split)


def _iter_nlvr2_split(split: str, path: Path, images: Path, max_caption_chars: int) -> Iterator[RawItem]:
    """One split's pair records; sentence/line rejects are partial (the pair may keep its other sentences)."""
    pairs: dict[str, dict] = {}
    for item in iter_nlvr2_lines(path):
        if isinstance(item, Reject):
            yield as_partial(item)
            continue
        line_number, entry = item
        identifier = entry["identifier"]
        where = f"{path}:{line_number}"
        sentence, reject = check_caption(entry.get("sentence"), identifier, where, max_caption_chars)
        if reject is not None:
            yield as_partial(reject)
            continue
        pair = pairs.setdefault(
            pair_id(identifier), {"questions": [], "answers": [], "directory": None, "line": line_number}
        )
        pair["questions"].append(sentence)
        pair["answers"].append(entry["label"])
        if entry.get("directory") is not None and pair["directory"] is None:
            pair["directory"] = str(entry["directory"])
    for pair_name, pair in pairs.items():
        where = f"{path}:{pair['line']}"
        try:
            folder = _pair_folder(images, split, pair_name, pair["directory"])
            image_paths = [safe_join(folder, f"{pair_name}-img{side}.png") for side in (0, 1)]
        except PathEscapesRootError as error:
            yield Reject(pair_name, where, PATH_ESCAPES_ROOT, str(error))
            continue
        yield RawRecord(
            record_id=pair_name,
            split=split,
            source=where,
            fields={
                "questions": pair["questions"],
                "answers": pair["answers"],
                "identifier": pair_name,
                "split": split,
            },
            images={f"image_{side}": ImageSource(str(p), root=str(images)) for side, p in enumerate(image_paths)},
        )


def _pair_folder(images: Path, split: str, pair_name: str, directory: str | None) -> Path:
    """The folder holding a pair's two PNGs (see the module docstring for the search order)."""
    split_root = images / split
    if directory is not None:
        return safe_join(split_root, directory)
    if (split_root / f"{pair_name}-img0.png").exists():
        return split_root
    number = pair_name.split("-")[1]
    return safe_join(split_root, number)
