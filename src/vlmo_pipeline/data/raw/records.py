"""Types shared by every raw-format reader.

A reader parses a dataset's annotation files once (metadata only) and then *streams* items, one per output row:
either a :class:`RawRecord` (the row's text fields plus where its image bytes live, not the bytes themselves) or
a :class:`Reject` (a record that cannot become a row, with one reason from :data:`REJECT_REASONS`). The ingest
driver reads and validates the image bytes of each record in a worker process and hands finished rows to the
single Arrow writer, so no reader ever holds a split's images in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# --- the fixed vocabulary of reject reasons (documented in docs/data_layout.md) ---------------------------------
MISSING_FILE = "missing_file"  # an image (or a sample's caption file) the annotations point at does not exist
ZERO_BYTE = "zero_byte"  # the image file is empty
CORRUPT_IMAGE = "corrupt_image"  # not a decodable image
TRUNCATED_IMAGE = "truncated_image"  # the image data ends early
DECOMPRESSION_BOMB = "decompression_bomb"  # width*height above the configured pixel limit
MALFORMED_LINE = "malformed_line"  # a TSV/JSON-lines line that does not have the expected shape
MALFORMED_RECORD = "malformed_record"  # an entry of a JSON document that lacks a required key or has a wrong type
UNKNOWN_ID = "unknown_id"  # an annotation refers to an id the other file does not define
EMPTY_CAPTION = "empty_caption"  # a caption/question/sentence that is empty after stripping whitespace
CAPTION_TOO_LONG = "caption_too_long"  # longer than IngestConfig.max_caption_chars characters
NO_CAPTIONS = "no_captions"  # an image left without any valid caption (all rejected or none annotated)
DOWNLOAD_FAILED = "download_failed"  # img2dataset reported a failed download for this sample
PATH_ESCAPES_ROOT = "path_escapes_root"  # an annotation path is absolute or climbs out of the dataset root
ANSWER_NOT_IN_VOCAB = "answer_not_in_vocab"  # VQA train question without any in-vocabulary answer (dropped)
NOT_REGULAR_FILE = "not_regular_file"  # a FIFO, device or socket where a file was expected (never opened)
TOO_LARGE = "too_large"  # more bytes than IngestConfig.max_image_bytes (read stops at limit + 1)
OUTSIDE_ROOT = "outside_root"  # a symlink whose target lies outside the dataset root (allow_outside_symlinks off)
UNREADABLE_FILE = "unreadable_file"  # permission denied, I/O error or a symlink loop
INVALID_UTF8 = "invalid_utf8"  # a line of a text/TSV/JSON-lines file that is not UTF-8

REJECT_REASONS: tuple[str, ...] = (
    MISSING_FILE,
    ZERO_BYTE,
    CORRUPT_IMAGE,
    TRUNCATED_IMAGE,
    DECOMPRESSION_BOMB,
    MALFORMED_LINE,
    MALFORMED_RECORD,
    UNKNOWN_ID,
    EMPTY_CAPTION,
    CAPTION_TOO_LONG,
    NO_CAPTIONS,
    DOWNLOAD_FAILED,
    PATH_ESCAPES_ROOT,
    ANSWER_NOT_IN_VOCAB,
    NOT_REGULAR_FILE,
    TOO_LARGE,
    OUTSIDE_ROOT,
    UNREADABLE_FILE,
    INVALID_UTF8,
)


class RawLayoutError(ValueError):
    """A required raw file is missing or a file does not have the expected layout.

    Raised once, before anything is written, with the offending path and what was expected.
    """

    def __init__(self, path: str | os.PathLike, expected: str):
        self.path = str(path)
        self.expected = expected
        super().__init__(f"{self.path}: {expected}")


class PathEscapesRootError(ValueError):
    """A path taken from an annotation file is absolute or leaves the dataset root."""


@dataclass(frozen=True)
class ImageSource:
    """Where one image's encoded bytes live: a whole file, or a byte range inside a file (a tar member).

    ``root``: the dataset folder the file must resolve into (symlinks followed; see
    :func:`vlmo_pipeline.data.raw.safe_io.read_regular_file`); None: no confinement check.
    """

    path: str
    offset: int | None = None  # None: the whole file
    length: int | None = None
    root: str | None = None

    def describe(self) -> str:
        """Human-readable location for reject logs."""
        if self.offset is None:
            return self.path
        return f"{self.path}@{self.offset}+{self.length}"


@dataclass
class RawRecord:
    """One future output row: text columns in ``fields``, image columns as :class:`ImageSource` in ``images``."""

    record_id: str
    split: str
    source: str
    fields: dict[str, Any]
    images: dict[str, ImageSource] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """A record that will not become a row. ``source`` is ``path[:line]``; ``detail`` is free text.

    ``split`` (when known) and ``partial`` (True when only a part of a row is lost: one caption of an image, one
    question of a VQA image, one NLVR2 sentence, a TSV annotation line) feed the driver's outcome checks; they
    are not written to ``rejects.jsonl`` and do not take part in comparisons.
    """

    record: str
    source: str
    reason: str
    detail: str = ""
    split: str | None = field(default=None, compare=False)
    partial: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {self.reason!r}; expected one of {REJECT_REASONS}")

    def to_json(self) -> dict[str, str]:
        out = {"record": self.record, "source": self.source, "reason": self.reason}
        if self.detail:
            out["detail"] = self.detail
        return out


RawItem = RawRecord | Reject


def tag_split(items: Iterable[RawItem], split: str) -> Iterator[RawItem]:
    """Pass ``items`` through, giving every :class:`Reject` without a split this ``split``."""
    for item in items:
        if isinstance(item, Reject) and item.split is None:
            item = replace(item, split=split)
        yield item


def as_partial(reject: Reject) -> Reject:
    """The same reject marked as losing only part of a row."""
    return replace(reject, partial=True)


@dataclass
class RawSource:
    """What a reader's ``open_*`` function returns after parsing the annotations.

    ``items`` is a lazy iterator (a generator): nothing heavy happens until it is consumed. ``splits`` lists the
    splits this source can produce (reported in the manifest even when a split ends up empty). ``artifacts`` are
    small JSON-serialisable files to write next to the shards (e.g. the VQA answer vocabulary); ``info`` is extra
    manifest content (e.g. annotation line counts); ``has_images`` False (text corpora) means records need no
    worker processes.
    """

    items: Iterator[RawItem]
    splits: tuple[str, ...]
    sources: list[str]
    total: int | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    has_images: bool = True


def _relative_part(parts: tuple[str, ...]) -> str:
    """The normalised relative path ``parts`` name; :class:`PathEscapesRootError` when absolute or escaping."""
    for part in parts:
        if not isinstance(part, str) or part == "":
            raise PathEscapesRootError(f"empty or non-string path part {part!r}")
        if os.path.isabs(part) or part.startswith(("/", "\\")) or (len(part) > 1 and part[1] == ":"):
            raise PathEscapesRootError(f"absolute path {part!r}")
    relative = os.path.normpath(os.path.join(*parts))
    if relative == ".." or relative.startswith(".." + os.sep) or relative == ".":
        raise PathEscapesRootError(f"path {os.path.join(*parts)!r} leaves the dataset root")
    return relative


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """Join annotation-provided path parts under ``root``, refusing absolute paths and ``..`` escapes.

    The check is lexical (symlinks inside the root are allowed: datasets are often assembled from links).
    Raises :class:`PathEscapesRootError`.
    """
    return Path(root) / _relative_part(parts)


def safe_join_str(root: str, *parts: str) -> str:
    """:func:`safe_join` as a string, for readers that join once per record: ``str(safe_join(root, *parts))``
    without building a :class:`~pathlib.Path` per call (which cost ~7 % of an in-process ingest).

    ``root`` must already be in the form ``str(Path(...))`` gives (the readers compute it once per source).
    """
    relative = _relative_part(parts)
    if root == ".":  # str(Path(".") / "a") is "a", not "./a"
        return relative
    return os.path.join(root, relative)


def check_caption(text: Any, record_id: str, source: str, max_chars: int) -> tuple[str | None, Reject | None]:
    """Strip a caption and check it; return (caption, None) when good or (None, reject) when not."""
    if not isinstance(text, str):
        return None, Reject(record_id, source, MALFORMED_RECORD, f"caption is {type(text).__name__}, not a string")
    stripped = text.strip()
    if not stripped:
        return None, Reject(record_id, source, EMPTY_CAPTION)
    if len(stripped) > max_chars:
        return None, Reject(record_id, source, CAPTION_TOO_LONG, f"{len(stripped)} > {max_chars} characters")
    return stripped, None


def check_captions(texts: Iterable[Any], record_id: str, source: str, max_chars: int) -> tuple[list[str], list[Reject]]:
    """Check every caption of one image; rejects are per caption (``<record_id>#<index>``)."""
    kept: list[str] = []
    rejects: list[Reject] = []
    for index, text in enumerate(texts):
        caption, reject = check_caption(text, f"{record_id}#{index}", source, max_chars)
        if reject is not None:
            rejects.append(as_partial(reject))
        else:
            kept.append(caption)
    return kept, rejects


def require_file(path: Path, expected: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`RawLayoutError` saying what was expected there."""
    if not path.is_file():
        raise RawLayoutError(path, f"missing required file ({expected})")
    return path


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """The first candidate path that exists, or None."""
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def load_json(path: Path, expected: str) -> Any:
    """Parse a whole JSON document, turning a syntax error into :class:`RawLayoutError`."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise RawLayoutError(path, f"not valid JSON ({error}); expected {expected}") from error
