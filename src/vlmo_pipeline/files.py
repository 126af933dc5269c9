"""Safe (atomic) file writes, stdlib only.

Every writer here writes a temporary file in the target's own directory, flushes and fsyncs it, then moves it over
the target with :func:`os.replace`, so readers see either the old file or the complete new one, never a torn write.
The temporary file is removed on any failure (including ``KeyboardInterrupt``) and the old target is left as it was.

The final file gets the permissions a plain ``open(path, "w")`` of a new file would give: ``0o666 & ~umask``
(``0o644`` under the usual ``022`` umask). The temporary file is created with ``os.open(..., 0o666)`` so the kernel
applies the umask (and any default ACL) itself; this is what ``tempfile.mkstemp`` does *not* do (it always creates
``0o600``). An existing target's mode is not carried over: a re-save fixes files written ``0o600`` by older code.

Importable from anywhere in the package (the models package included): no third-party imports.

* :func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_write_json`: write data held in memory;
* :func:`atomic_write_via`: for writers that want a file name (``safetensors.torch.save_file``, ``shutil.copyfile``,
  ...): ``writer(temp_path)`` writes the temporary file, which is then fsynced and moved into place.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_write_via", "TEMP_SUFFIX"]

#: Temporary files are named ``.<target name>.<random hex>.tmp`` next to the target.
TEMP_SUFFIX = ".tmp"
_MAX_PREFIX = 200  # keep ".<name>.<hex>.tmp" under the usual 255-byte NAME_MAX


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create (O_EXCL) an empty temporary file next to ``target``; returns (fd, path). Mode is 0o666 & ~umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp = target.with_name(f".{target.name[:_MAX_PREFIX]}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file next to {target}")


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); silently skipped where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_via(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Atomically create or replace ``path`` with whatever ``writer(temp_path)`` writes to ``temp_path``.

    ``temp_path`` is an existing empty file in the same directory (named ``.<name>.<hex>.tmp``: writers that add
    their own suffix to a bare name, like ``numpy.save``, should be given an open file instead). After ``writer``
    returns, the file is fsynced, given the mode a plain ``open()`` would give, and moved onto ``path``. If
    ``writer`` raises, the temporary file is removed, ``path`` is untouched and the exception propagates.
    Returns ``path`` as a :class:`~pathlib.Path`. The parent directory must exist.
    """
    target = Path(path)
    fd, temp = _create_temp(target)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        writer(temp)
        fd = os.open(temp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:  # a writer that re-created the file with its own mode
                os.chmod(temp, mode)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _fsync_directory(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically create or replace ``path`` with ``data``. Returns ``path`` as a :class:`~pathlib.Path`."""
    target = Path(path)
    fd, temp = _create_temp(target)
    try:
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _fsync_directory(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` (encoded with ``encoding``; newlines written as given, no translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(
    path: str | os.PathLike,
    data: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    trailing_newline: bool = True,
    ensure_ascii: bool = True,
) -> Path:
    """Atomically write ``data`` as JSON (``json.dumps`` options as given; a final newline by default).

    The data is serialised before anything touches the disk, so an unserialisable value leaves no file behind."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    return atomic_write_text(path, text + ("\n" if trailing_newline else ""))
