"""Defensive file access for raw trees: regular files only, bounded reads, symlinks confined to the dataset root,
line-wise decoding, and streaming JSON.

A raw tree is assembled by people and scripts, so it can hold anything: a FIFO where an image should be (opening
it blocks forever), a symlink to ``/dev/zero`` (reading it never ends), a link out of the tree (to another
dataset, or to ``/etc/passwd``), a file of several GB where a 100 KB JPEG was expected, a TSV with one line in
Latin-1. Everything here turns such a case into a :class:`FileRejected` with one reject reason, so the driver can
record it and carry on, instead of hanging, exhausting memory or silently ingesting the wrong bytes.

* :func:`read_regular_file`: ``os.stat`` first (follows links; anything but a regular file is refused without
  being opened, so no FIFO or device is ever opened), then the resolved path is checked against the resolved
  dataset root, then ``os.open(O_RDONLY | O_NONBLOCK | O_NOFOLLOW)`` on the resolved path and ``fstat`` on the
  descriptor (the file may have been swapped since the stat), and at most ``limit + 1`` bytes are read: one read
  sized from that ``fstat`` (plus one byte, and a small read that must find the end of the file), so a file of
  any size costs no more memory than its bytes.
* :func:`iter_binary_lines`: a file's lines as bytes with their 1-based number (decoding is the caller's, per
  line, so one undecodable line is one reject and does not stop the file).
* :func:`iter_json_items`: ``ijson`` items under a prefix (e.g. ``"images.item"``), one at a time; a syntax error
  becomes :class:`~vlmo_pipeline.data.raw.records.RawLayoutError` naming the file, the byte offset reached and the
  index of the item being read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.raw.records import (
    MISSING_FILE,
    NOT_REGULAR_FILE,
    OUTSIDE_ROOT,
    TOO_LARGE,
    TRUNCATED_IMAGE,
    UNREADABLE_FILE,
    RawLayoutError,
)

#: Default cap on the bytes read for one image (``IngestConfig.max_image_bytes``).
DEFAULT_MAX_IMAGE_BYTES = 64 << 20
#: Default cap on a small side file read whole (an img2dataset ``<key>.txt`` caption).
DEFAULT_MAX_TEXT_BYTES = 1 << 20

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NOFOLLOW", 0)
#: Size of the reads after the first, fstat-sized one (only a file that grew, or whose size lies, needs them).
#: Kept under glibc's fixed 128 KiB mmap threshold: Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which turns off the
#: dynamic threshold, and then every larger buffer os.read allocates is a fresh mmap + munmap (45 µs against 9 µs
#: for a 4 KB file, measured in a Dask worker).
_FOLLOW_UP_BLOCK = 64 << 10


class FileRejected(Exception):
    """A file that must not (or cannot) be read; ``reason`` is one of the reject reasons."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def is_inside(path: str, root: str) -> bool:
    """True when the (already resolved) ``path`` is ``root`` or below it."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives (Windows) or a mix of absolute and relative paths
        return False


def _resolve_below(name: str, root: str, resolved_root: str) -> str | None:
    """``realpath(name)`` computed cheaply when ``name`` is ``root/<relative>`` lexically and no component of
    ``<relative>`` is a symlink: then it is ``resolved_root/<relative>``. None when that cannot be shown (a link
    below the root, a ``.``/``..`` component, a path not spelled under ``root``, an ``lstat`` error): the caller
    falls back to a full ``realpath``, so links inside the tree are still followed and checked."""
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not name.startswith(prefix):
        return None
    relative = name[len(prefix) :]
    parts = relative.split(os.sep)
    if "" in parts or "." in parts or ".." in parts:
        return None
    current = prefix[:-1]
    try:
        for part in parts:
            current = current + os.sep + part
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return None
    except OSError:
        return None
    return resolved_root + relative if resolved_root.endswith(os.sep) else resolved_root + os.sep + relative


def resolve_confined(
    path: str | os.PathLike,
    root: str | os.PathLike | None,
    allow_outside: bool,
    resolved_root: str | None = None,
) -> str:
    """``path`` with every symlink resolved; :class:`FileRejected` (``outside_root``) when it leaves ``root``.

    ``root`` is resolved too, so a dataset root that is itself a link (``data/01_raw/coco -> /mnt/coco``) is fine;
    a link *inside* the root that points out of it is not, unless ``allow_outside``. ``root`` None: no check.
    ``resolved_root``: ``os.path.realpath(root)`` when the caller already has it (the ingest resolves each root
    once per task instead of once per file). Only the components below the root are examined when none of them
    is a link (``lstat`` each); otherwise the whole path is resolved as ``os.path.realpath`` does.
    """
    name = os.fspath(path)
    if root is None or allow_outside:
        return os.path.realpath(name)
    root_name = os.fspath(root)
    if resolved_root is None:
        resolved_root = os.path.realpath(root_name)
    resolved = _resolve_below(name, root_name, resolved_root)
    if resolved is not None:
        return resolved  # resolved_root/<relative> with no link below the root: inside by construction
    resolved = os.path.realpath(name)
    if not is_inside(resolved, resolved_root):
        raise FileRejected(
            OUTSIDE_ROOT,
            f"{name} resolves to {resolved}, outside the dataset root "
            f"{resolved_root} (ingest.allow_outside_symlinks: true allows it)",
        )
    return resolved


def read_regular_file(
    path: str | os.PathLike,
    *,
    limit: int,
    root: str | os.PathLike | None = None,
    allow_outside: bool = False,
    offset: int | None = None,
    length: int | None = None,
    resolved_root: str | None = None,
) -> bytes:
    """Read a regular file (or ``length`` bytes at ``offset``) of at most ``limit`` bytes; see the module docs.

    ``resolved_root``: ``os.path.realpath(root)``, when the caller has it already (see :func:`resolve_confined`).

    Raises :class:`FileRejected` with ``missing_file`` (absent, or a directory), ``not_regular_file`` (FIFO,
    device, socket; never opened), ``outside_root``, ``too_large`` (more than ``limit`` bytes, found from the size
    before reading or, for files whose size lies, after reading ``limit + 1``), ``unreadable_file`` (permission
    or I/O error, a link loop) or ``truncated_image`` (a byte range that the file does not hold completely).
    """
    name = os.fspath(path)
    try:
        before = os.stat(name)  # follows symlinks: describes what an open() would reach
    except FileNotFoundError:
        raise FileRejected(MISSING_FILE, f"no such file: {name}") from None
    except OSError as error:  # ELOOP, EACCES on a parent folder, ENAMETOOLONG ...
        raise FileRejected(UNREADABLE_FILE, f"{name}: {error.strerror or error}") from None
    if stat.S_ISDIR(before.st_mode):
        raise FileRejected(MISSING_FILE, f"is a directory, not a file: {name}")
    if not stat.S_ISREG(before.st_mode):
        raise FileRejected(NOT_REGULAR_FILE, f"{name} is {_kind(before.st_mode)}; only regular files are read")
    resolved = resolve_confined(name, root, allow_outside, resolved_root)
    wanted = before.st_size if offset is None else (length if length is not None else before.st_size - offset)
    if wanted > limit:
        raise FileRejected(TOO_LARGE, f"{name}: {wanted} bytes > limit {limit} (ingest.max_image_bytes)")
    try:
        fd = os.open(resolved, _OPEN_FLAGS)
    except FileNotFoundError:
        raise FileRejected(MISSING_FILE, f"no such file: {name} (removed while reading)") from None
    except OSError as error:
        raise FileRejected(UNREADABLE_FILE, f"{name}: {error.strerror or error}") from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):  # swapped for something else between stat and open
            raise FileRejected(NOT_REGULAR_FILE, f"{name} is {_kind(now.st_mode)}; only regular files are read")
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        budget = limit + 1 if length is None else min(length, limit + 1)
        # First read: what fstat says is there, plus one byte (a file that grew is then seen as too large without
        # trusting its size), so a 4 KB image allocates ~4 KB, not a large block; then small reads until the end
        # of the file or the budget, which for an honest regular file is one read that returns nothing.
        expected = now.st_size - (offset or 0) if length is None else length
        request = min(budget, max(expected, 0) + 1)
        blocks = []
        while budget > 0:
            block = os.read(fd, request)
            if not block:
                break
            blocks.append(block)
            budget -= len(block)
            request = min(budget, _FOLLOW_UP_BLOCK)
    except OSError as error:
        raise FileRejected(UNREADABLE_FILE, f"{name}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    data = blocks[0] if len(blocks) == 1 else b"".join(blocks)
    if len(data) > limit:
        raise FileRejected(TOO_LARGE, f"{name}: more than {limit} bytes (ingest.max_image_bytes)")
    if length is not None and len(data) != length:
        raise FileRejected(TRUNCATED_IMAGE, f"expected {length} bytes, file ends after {len(data)}")
    return data


# --- lines ------------------------------------------------------------------------------------------------------


def iter_binary_lines(
    path: str | os.PathLike, block_size: int = 1 << 20, max_line_bytes: int | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line bytes)`` for every line of a file, numbers from 1, without the ``\\n`` / ``\\r\\n``.

    Reads in blocks and splits on ``\\n`` only (so a stray ``\\r`` or a Unicode line separator inside a line does
    not shift the numbering the way ``str.splitlines`` would); a last line without ``\\n`` is yielded too. A line
    longer than ``max_line_bytes`` is yielded as ``None`` (its bytes are skipped, not held), so memory stays
    bounded even for a file without any newline.
    """

    def strip_cr(line: bytes) -> bytes:
        return line[:-1] if line.endswith(b"\r") else line

    with open(path, "rb") as handle:
        number = 0
        rest = b""
        overlong = False  # inside a line already known to be too long: drop bytes up to its newline
        while True:
            block = handle.read(block_size)
            if not block:
                break
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                number += 1
                if overlong:
                    overlong = False
                    yield number, None
                elif max_line_bytes is not None and len(line) > max_line_bytes:
                    yield number, None
                else:
                    yield number, strip_cr(line)
            if max_line_bytes is not None and len(rest) > max_line_bytes:
                overlong, rest = True, b""
        if overlong:
            yield number + 1, None
        elif rest:
            yield number + 1, strip_cr(rest)


def decode_line(raw: bytes) -> tuple[str | None, str]:
    """(text, "") for a UTF-8 line (a leading byte-order mark dropped), (None, what is wrong) otherwise."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff"), ""
    except UnicodeDecodeError as error:
        bad = raw[error.start : error.start + 4]
        return None, f"not UTF-8: byte {error.start} of the line ({bad!r}...): {error.reason}"


# --- streaming JSON ---------------------------------------------------------------------------------------------


def _ijson_message(error: Exception) -> str:
    text = str(error)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1].encode().decode("unicode_escape", errors="replace")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first


def iter_json_items(path: str | os.PathLike, prefix: str, expected: str) -> Iterator[Any]:
    """Stream the items of the array at ``prefix`` (ijson syntax: ``"images.item"``, ``"item"`` for a top-level
    list), one Python object at a time, floats as ``float``.

    A syntax error anywhere (also after the array) raises :class:`RawLayoutError` naming the file, the byte
    offset the parser had read up to, and the index of the item being parsed. Nothing at ``prefix`` yields no
    items (callers check the shape with :func:`json_prefix_kinds` first).
    """
    import ijson

    path = Path(path)
    index = 0
    with open(path, "rb") as handle:
        try:
            for item in ijson.items(handle, prefix, use_float=True):
                yield item
                index += 1
        except (ijson.JSONError, UnicodeDecodeError) as error:
            raise RawLayoutError(
                path,
                f"not valid JSON ({_ijson_message(error)}) near byte {handle.tell()}, "
                f"while reading {prefix}[{index}]; expected {expected}",
            ) from None


def json_prefix_kinds(path: str | os.PathLike, prefixes: tuple[str, ...], expected: str) -> dict[str, str]:
    """One streaming pass over a whole document: the JSON kind (``start_array``, ``start_map``, ``string``, ...)
    found at each of ``prefixes`` (absent prefixes are left out) plus, under ``"<prefix>#count"``, the number of
    direct items of each array prefix. Validates the whole file's syntax in constant memory (no object is built).
    """
    import ijson

    path = Path(path)
    kinds: dict[str, Any] = {}
    counts = {prefix: 0 for prefix in prefixes}
    item_prefixes = {f"{prefix}.item" if prefix else "item": prefix for prefix in prefixes}
    value_events = {"start_map", "start_array", "string", "number", "boolean", "null"}
    with open(path, "rb") as handle:
        try:
            for current, event, _ in ijson.parse(handle):
                if event not in value_events:
                    continue
                if current in counts and current not in kinds:
                    kinds[current] = event
                owner = item_prefixes.get(current)
                if owner is not None:
                    counts[owner] += 1
        except (ijson.JSONError, UnicodeDecodeError) as error:
            raise RawLayoutError(
                path, f"not valid JSON ({_ijson_message(error)}) near byte {handle.tell()}; expected {expected}"
            ) from None
    for prefix in prefixes:
        if prefix in kinds:
            kinds[f"{prefix}#count"] = counts[prefix]
    return kinds
