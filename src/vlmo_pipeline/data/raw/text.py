"""Text-only corpora for language pretraining: WikiText raw files and plain line corpora (wikibk, BookCorpus).

Every ``*.raw``, ``*.tokens`` (WikiText v1 ``wiki.train.tokens`` etc., read like the raw files) and ``*.txt`` file
under the root (recursively, sorted by relative path) is read line by line, as bytes, each line decoded on its
own (a line that is not UTF-8 is an ``invalid_utf8`` reject naming its line; the rest of the file is kept):

* blank lines and WikiText heading lines (`` = Title = ``, `` = = Section = = ``) are structure and skipped;
* every other line is split into sentences after ``.``, ``?`` or ``!`` followed by whitespace, except after an
  initial or a common abbreviation (WikiText lines are paragraphs; a one-sentence-per-line corpus passes through
  unchanged);
* each sentence is one row: ``caption`` = [sentence], ``source`` = the file's path relative to the root.

The split comes from the file name: a ``train`` / ``valid`` or ``val`` / ``test`` part (``wiki.valid.raw``,
``test.txt``) selects that split, anything else (``wikibk.0.txt``, ``book.epub.txt``) is ``train``.

Files found by the search that are not regular files (a FIFO, a link to a device) or that are symlinks resolving
outside the root (unless ``allow_outside_symlinks``) are not opened: each becomes one reject
(``not_regular_file`` / ``outside_root``) with the file as record. Symlinked folders are followed only when they
resolve inside the root (and once: no loops).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from vlmo_pipeline.data.raw.records import (
    INVALID_UTF8,
    NOT_REGULAR_FILE,
    OUTSIDE_ROOT,
    TOO_LARGE,
    RawItem,
    RawLayoutError,
    RawRecord,
    RawSource,
    Reject,
    check_caption,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import decode_line, is_inside, iter_binary_lines

TEXT_SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".raw", ".tokens", ".txt")
#: A "line" longer than this (a corpus file without newlines) is one reject, not an unbounded read.
MAX_LINE_BYTES = 16 << 20
_HEADING = re.compile(r"^\s*(=\s+)+[^=].*?(\s+=)+\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
# A period after these does not end a sentence ("James B. Longacre", "Mr. Smith").
_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "mt",
    "vs",
    "no",
    "prof",
    "gen",
    "col",
    "lt",
    "sgt",
    "capt",
    "rev",
    "inc",
    "ltd",
    "co",
    "etc",
    "e.g",
    "i.e",
}
_SPLIT_WORDS = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}


def split_of_file(path: Path) -> str:
    """train/val/test from a corpus file name (see the module docstring)."""
    for part in re.split(r"[._\-]", path.name.lower()):
        if part in _SPLIT_WORDS:
            return _SPLIT_WORDS[part]
    return "train"


def is_heading(line: str) -> bool:
    """True for WikiText section headings such as `` = = Career = = ``."""
    return _HEADING.match(line) is not None


def _ends_with_abbreviation(piece: str) -> bool:
    if not piece.endswith("."):
        return False
    last_word = piece[:-1].rsplit(None, 1)[-1] if piece[:-1].strip() else ""
    return (len(last_word) == 1 and last_word.isupper()) or last_word.lower() in _ABBREVIATIONS


def split_sentences(line: str) -> list[str]:
    """Split one paragraph into sentences after ``.``/``?``/``!`` + whitespace, except after an initial or a
    common abbreviation; empty pieces are dropped."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(line.strip()):
        piece = piece.strip()
        if not piece:
            continue
        if sentences and _ends_with_abbreviation(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def iter_text_file(path: Path, relative: str, split: str, max_caption_chars: int) -> Iterator[RawItem]:
    """Stream sentence rows (and too-long / not-UTF-8 rejects) from one corpus file."""
    for line_number, raw in iter_binary_lines(path, max_line_bytes=MAX_LINE_BYTES):
        where = f"{path}:{line_number}"
        if raw is None:
            yield Reject(f"{relative}:{line_number}", where, TOO_LARGE, f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        line, problem = decode_line(raw)
        if line is None:
            yield Reject(f"{relative}:{line_number}", where, INVALID_UTF8, problem)
            continue
        if not line.strip() or is_heading(line):
            continue
        for index, sentence in enumerate(split_sentences(line)):
            record = f"{relative}:{line_number}#{index}"
            text, reject = check_caption(sentence, record, where, max_caption_chars)
            if reject is not None:
                yield reject
                continue
            yield RawRecord(
                record_id=record,
                split=split,
                source=where,
                fields={"caption": [text], "source": relative, "split": split},
            )


def scan_corpus(root: Path, allow_outside_symlinks: bool = False) -> tuple[list[Path], list[Reject]]:
    """Corpus files under ``root`` sorted by relative path, plus rejects for candidates that must not be read
    (module docstring). A single file as ``root`` is accepted too."""
    if root.is_file():
        return [root], []
    if not root.is_dir():
        raise RawLayoutError(root, "missing text corpus folder")
    real_root = os.path.realpath(root)
    files: list[Path] = []
    rejects: list[Reject] = []
    seen_dirs = {real_root}
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(folder, name))
            if real in seen_dirs or (not allow_outside_symlinks and not is_inside(real, real_root)):
                continue
            seen_dirs.add(real)
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            path = Path(folder) / name
            if path.suffix not in TEXT_SUFFIXES or name.startswith("."):
                continue
            relative = str(path.relative_to(root))
            try:
                mode = os.stat(path).st_mode
            except OSError:  # a dangling link
                continue
            if not stat.S_ISREG(mode):
                rejects.append(Reject(relative, str(path), NOT_REGULAR_FILE, "not a regular file; not opened"))
            elif not allow_outside_symlinks and not is_inside(os.path.realpath(path), real_root):
                rejects.append(
                    Reject(
                        relative,
                        str(path),
                        OUTSIDE_ROOT,
                        f"resolves to {os.path.realpath(path)}, "
                        "outside the dataset root (ingest.allow_outside_symlinks: true allows it)",
                    )
                )
            else:
                files.append(path)
    files.sort(key=lambda p: p.relative_to(root).parts)
    rejects.sort(key=lambda r: r.record)
    if not files:
        raise RawLayoutError(
            root,
            "no text corpus files: expected *.raw or *.tokens (WikiText) or *.txt (one line per sentence or paragraph)",
        )
    return files, rejects


def find_corpus_files(root: Path) -> list[Path]:
    """Corpus files under ``root`` (a single file is accepted too), sorted by relative path."""
    return scan_corpus(root)[0]


def open_text(
    root: str | Path,
    *,
    max_caption_chars: int,
    files: list[str | Path] | None = None,
    allow_outside_symlinks: bool = False,
) -> RawSource:
    """Find corpus files under ``root`` (or take ``files``) and return a streaming :class:`RawSource`."""
    root = Path(root)
    paths, file_rejects = ([Path(f) for f in files], []) if files else scan_corpus(root, allow_outside_symlinks)
    for path in paths:
        if not path.is_file():
            raise RawLayoutError(path, "missing text corpus file")
    base = root if root.is_dir() else root.parent
    relatives = [str(p.relative_to(base)) if p.is_relative_to(base) else p.name for p in paths]
    splits = tuple(s for s in TEXT_SPLITS if any(split_of_file(p) == s for p in paths))

    def items() -> Iterator[RawItem]:
        for reject in file_rejects:
            yield replace(reject, split=split_of_file(Path(reject.source)))
        for path, relative in zip(paths, relatives):
            yield from tag_split(
                iter_text_file(path, relative, split_of_file(path), max_caption_chars), split_of_file(path)
            )

    return RawSource(items(), splits, [str(p) for p in paths], has_images=False)
