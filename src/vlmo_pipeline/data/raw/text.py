"""Text-only corpora for language pretraining: WikiText raw files and plain line corpora (wikibk, BookCorpus).

Every ``*.raw`` and ``*.txt`` file under the root (recursively, sorted by relative path) is read line by line:

* blank lines and WikiText heading lines (`` = Title = ``, `` = = Section = = ``) are structure and skipped;
* every other line is split into sentences after ``.``, ``?`` or ``!`` followed by whitespace, except after an
  initial or a common abbreviation (WikiText lines are paragraphs; a one-sentence-per-line corpus passes through
  unchanged);
* each sentence is one row: ``caption`` = [sentence], ``source`` = the file's path relative to the root.

The split comes from the file name: a ``train`` / ``valid`` or ``val`` / ``test`` part (``wiki.valid.raw``,
``test.txt``) selects that split, anything else (``wikibk.0.txt``, ``book.epub.txt``) is ``train``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from vlmo_pipeline.data.raw.records import RawItem, RawLayoutError, RawRecord, RawSource, check_caption

TEXT_SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".raw", ".txt")
_HEADING = re.compile(r"^\s*(=\s+)+[^=].*?(\s+=)+\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
# A period after these does not end a sentence ("James B. Longacre", "Mr. Smith").
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "mt", "vs", "no", "prof", "gen", "col", "lt", "sgt",
                  "capt", "rev", "inc", "ltd", "co", "etc", "e.g", "i.e"}
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
    """Stream sentence rows (and too-long rejects) from one corpus file."""
    with open(path, encoding="utf-8", errors="strict") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip() or is_heading(line):
                continue
            where = f"{path}:{line_number}"
            for index, sentence in enumerate(split_sentences(line)):
                record = f"{relative}:{line_number}#{index}"
                text, reject = check_caption(sentence, record, where, max_caption_chars)
                if reject is not None:
                    yield reject
                    continue
                yield RawRecord(record_id=record, split=split, source=where,
                                fields={"caption": [text], "source": relative, "split": split})


def find_corpus_files(root: Path) -> list[Path]:
    """Corpus files under ``root`` (a single file is accepted too), sorted by relative path."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise RawLayoutError(root, "missing text corpus folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise RawLayoutError(root, "no text corpus files: expected *.raw (WikiText) or *.txt (one line per "
                             "sentence or paragraph)")
    return files


def open_text(root: str | Path, *, max_caption_chars: int, files: list[str | Path] | None = None) -> RawSource:
    """Find corpus files under ``root`` (or take ``files``) and return a streaming :class:`RawSource`."""
    root = Path(root)
    paths = [Path(f) for f in files] if files else find_corpus_files(root)
    for path in paths:
        if not path.is_file():
            raise RawLayoutError(path, "missing text corpus file")
    base = root if root.is_dir() else root.parent
    relatives = [str(p.relative_to(base)) if p.is_relative_to(base) else p.name for p in paths]
    splits = tuple(s for s in TEXT_SPLITS if any(split_of_file(p) == s for p in paths))

    def items() -> Iterator[RawItem]:
        for path, relative in zip(paths, relatives):
            try:
                yield from iter_text_file(path, relative, split_of_file(path), max_caption_chars)
            except UnicodeDecodeError as error:
                raise RawLayoutError(path, f"not UTF-8 text ({error})") from error

    return RawSource(items(), splits, [str(p) for p in paths], has_images=False)
