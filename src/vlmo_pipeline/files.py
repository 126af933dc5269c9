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
  ``figure.savefig``, ...): ``writer(temp_path)`` writes the temporary file, which is then fsynced and moved into
  place;
* :func:`swap_directory`: replace a whole directory by a finished staging sibling, with renames only;
* :func:`staging_dir`, :func:`remove_stale_siblings`: name a writer's staging sibling (``.<name>.tmp-<pid>``) and
  remove the debris (staging folders, retired ``.old-<pid>`` folders, temporary files) that killed writers left
  next to a target;
* :func:`lock_target`: an exclusive, non-blocking ``flock`` on ``.<name>.lock`` beside a target, so two processes
  writing the same output fail fast instead of racing.

Fsync policy: by default the file and then its directory are fsynced, so a finished write survives a power cut.
``durable=False`` skips both for outputs that are regenerated rather than kept (the demo world, written into a
staging folder that is itself swapped into place): the rename alone already keeps readers from seeing a partial
file. ``parents=True`` creates missing parent directories first.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_via",
    "swap_directory",
    "fsync_directory",
    "staging_dir",
    "remove_stale_siblings",
    "lock_target",
    "TargetLockedError",
    "pid_alive",
    "TEMP_SUFFIX",
    "LEGACY_TEMP_MAX_AGE_S",
]

#: Temporary files are named ``.<target name>.<writer pid>.<random hex>.tmp`` next to the target.
TEMP_SUFFIX = ".tmp"
_MAX_PREFIX = 200  # keep ".<name>.<pid>.<hex>.tmp" under the usual 255-byte NAME_MAX
#: Temporary files of older code carry no pid (``.<name>.<hex>.tmp``): they are removed once this old (seconds).
LEGACY_TEMP_MAX_AGE_S = 3600.0


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a zombie or another user's process counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as error:  # pragma: no cover - e.g. EINVAL on an odd platform: keep the file
        return error.errno != errno.ESRCH
    return True


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create (O_EXCL) an empty temporary file next to ``target``; returns (fd, path). Mode is 0o666 & ~umask.

    Temporary files of writers that died (their pid no longer runs) are removed first."""
    _remove_stale_temps(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp = target.with_name(f".{target.name[:_MAX_PREFIX]}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file next to {target}")


def fsync_directory(directory: str | os.PathLike) -> None:
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


def _prepare(path: str | os.PathLike, parents: bool) -> Path:
    target = Path(path)
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def _replacing(path: str | os.PathLike, *, durable: bool, parents: bool) -> Iterator[tuple[int, Path]]:
    """Yield ``(fd, temp)``: a new empty file beside ``path``. On a clean exit ``temp`` is moved onto ``path`` (and
    the directory fsynced when ``durable``); on an exception it is removed and ``path`` is untouched. The caller
    writes (and fsyncs) the file and closes ``fd``."""
    target = _prepare(path, parents)
    fd, temp = _create_temp(target)
    try:
        yield fd, temp
        os.replace(temp, target)
    except BaseException:
        _unlink_quietly(temp)
        raise
    if durable:
        fsync_directory(target.parent)


def atomic_write_via(
    path: str | os.PathLike, writer: Callable[[Path], Any], *, durable: bool = True, parents: bool = False
) -> Path:
    """Atomically create or replace ``path`` with whatever ``writer(temp_path)`` writes to ``temp_path``.

    ``temp_path`` is an existing empty file in the same directory (named ``.<name>.<hex>.tmp``: writers that add
    their own suffix to a bare name, like ``numpy.save``, should be given an open file instead). After ``writer``
    returns, the file is fsynced, given the mode a plain ``open()`` would give, and moved onto ``path``. If
    ``writer`` raises, the temporary file is removed, ``path`` is untouched and the exception propagates.
    Returns ``path`` as a :class:`~pathlib.Path`. The parent directory must exist unless ``parents``.
    """
    with _replacing(path, durable=durable, parents=parents) as (fd, temp):
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        writer(temp)
        fd = os.open(temp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            if durable:
                os.fsync(fd)
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:  # a writer that re-created the file with its own mode
                os.chmod(temp, mode)
        finally:
            os.close(fd)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True, parents: bool = False) -> Path:
    """Atomically create or replace ``path`` with ``data``. Returns ``path`` as a :class:`~pathlib.Path`."""
    with _replacing(path, durable=durable, parents=parents) as (fd, _temp):
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(
    path: str | os.PathLike, text: str, encoding: str = "utf-8", *, durable: bool = True, parents: bool = False
) -> Path:
    """Atomically write ``text`` (encoded with ``encoding``; newlines written as given, no translation)."""
    return atomic_write_bytes(path, text.encode(encoding), durable=durable, parents=parents)


def atomic_write_json(
    path: str | os.PathLike,
    data: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    trailing_newline: bool = True,
    ensure_ascii: bool = True,
    default: Callable[[Any], Any] | None = None,
    allow_nan: bool = True,
    durable: bool = True,
    parents: bool = False,
) -> Path:
    """Atomically write ``data`` as JSON (``json.dumps`` options as given; a final newline by default).

    The data is serialised before anything touches the disk, so an unserialisable value leaves no file behind.
    ``allow_nan=False`` makes NaN / ±inf a ``ValueError`` (strict JSON) instead of the bare ``NaN`` tokens that
    ``json.dumps`` writes by default."""
    text = json.dumps(
        data, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default, allow_nan=allow_nan
    )
    return atomic_write_text(path, text + ("\n" if trailing_newline else ""), durable=durable, parents=parents)


def swap_directory(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Replace the directory ``target`` by the finished directory ``staging`` (same parent) with renames only.

    The old ``target`` is first renamed to ``.<name>.old-<pid>`` and removed once ``staging`` is in its place, so
    at every moment ``target`` is either the complete old directory or the complete new one.
    """
    staging, target = Path(staging), Path(target)
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    if retired.exists():
        shutil.rmtree(retired, ignore_errors=True)
    fsync_directory(target.parent)


def staging_dir(target: str | os.PathLike) -> Path:
    """The staging sibling of the directory ``target`` for this process: ``.<name>.tmp-<pid>``."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        _unlink_quietly(path)


def _remove_stale_temps(target: Path, now: float | None = None) -> list[Path]:
    """Remove ``.<name>.<pid>.<hex>.tmp`` files of dead writers (and old pid-less ones) next to ``target``."""
    prefix = f".{target.name[:_MAX_PREFIX]}."
    pattern = re.compile(rf"^{re.escape(prefix)}(?:(\d+)\.)?[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}$")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    now = time.time() if now is None else now
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = pattern.match(entry.name)
        if match is None:
            continue
        pid = match.group(1)
        if pid is not None:
            stale = not pid_alive(int(pid))
        else:
            try:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_MAX_AGE_S
            except OSError:
                continue
        if stale:
            path = Path(entry.path)
            _remove_path(path)
            removed.append(path)
    return removed


def remove_stale_siblings(target: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left next to ``target``; returns the removed paths.

    * ``.<name>.tmp-<pid>`` (staging folders of :func:`staging_dir`) and ``.<name>.old-<pid>`` (retired folders of
      :func:`swap_directory`) whose ``pid`` is not a running process;
    * ``.<name>.<pid>.<hex>.tmp`` temporary files of this module's writers whose ``pid`` is not running, and
      pid-less ``.<name>.<hex>.tmp`` ones (older code) last modified more than :data:`LEGACY_TEMP_MAX_AGE_S` ago.

    A live process's staging folder or temporary file is never touched (the pid check is local to this machine:
    do not share one output folder between machines).
    """
    target = Path(target)
    removed = _remove_stale_temps(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)$")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is not None and not pid_alive(int(match.group(1))):
            path = Path(entry.path)
            _remove_path(path)
            removed.append(path)
    return removed


class TargetLockedError(RuntimeError):
    """Another process holds the write lock of an output (see :func:`lock_target`)."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` beside it (outside the output, so DVC never hashes it)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def lock_target(target: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``.<name>.lock`` beside ``target`` for the ``with`` block.

    Non-blocking: when another process (or another open of the lock in this one) holds it, raises
    :class:`TargetLockedError` ``"<target> is being written by another process (pid N, lock file ...)"``. The holder
    writes its pid into the file. The kernel releases the lock when the holder exits, however it dies (SIGKILL
    included), so a stale lock file never blocks anyone. The file itself is left in place on release: removing it
    would let a process that opened the old file lock a different inode from one that creates a new file. Yields
    the lock file's path. POSIX only (``fcntl``); elsewhere the block runs unlocked.
    """
    target = Path(target)
    path = lock_path(target)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise TargetLockedError(
                f"{target} is being written by another process (pid {holder}, lock file {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
