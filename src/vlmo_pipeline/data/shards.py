"""The Arrow shards of a dataset as the readers see them: found through the manifest, checked, memory-mapped.

* :func:`manifest_shards` / :func:`resolve_shard_sources`: which shard files a ``(dataset directory, split)``
  source means, read from ``manifest.json`` (never a directory scan) with what the manifest promises for each
  (rows, bytes, sha256, schema); :func:`check_shard_files` holds the files to those promises.
* :class:`ShardedArrowTable`: the rows of several shards seen as one table, memory-mapped, opened lazily per
  record batch, every Arrow/OS error a :class:`~vlmo_pipeline.data.arrow_io.ShardError` naming the shard.

The writer side of the same format is :mod:`vlmo_pipeline.data.arrow_io`; the torch Datasets built on these
tables are :mod:`vlmo_pipeline.data.datasets`.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vlmo_pipeline.data import arrow_io
from vlmo_pipeline.data.arrow_io import SHARD_PATTERN, VERIFY_LEVELS, ShardError

log = logging.getLogger(__name__)

#: A shard source: ``(root, dataset, split)``, or a dataset directory / shard file path (split from the argument).
SourceSpec = tuple | str | os.PathLike


# --------------------------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class ShardSource:
    """One shard to read and what its manifest promises: ``rows``, ``bytes``, ``sha256`` and the ``schema``."""

    path: Path
    rows: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    schema: pa.Schema | None = None
    dataset: str | None = None


def manifest_shards(dataset_dir: str | os.PathLike, split: str) -> list[ShardSource]:
    """The shards of ``split`` as the manifest of ``dataset_dir`` lists them, in shard order.

    Raises :class:`~vlmo_pipeline.data.arrow_io.DatasetNotReadyError` (a ``FileNotFoundError``) naming the
    directory when it is missing, has no manifest or holds ``ingest_failed.json``; ``FileNotFoundError`` when the
    manifest has no shard of ``split`` (listing the splits it has); :class:`ShardError` for a listed shard that is
    missing.
    """
    directory = Path(dataset_dir)
    manifest = arrow_io.load_manifest(directory)
    entries = [shard for shard in manifest["shards"] if shard["split"] == split]
    if not entries:
        available = ", ".join(sorted(s for s, rows in manifest["splits"].items() if rows)) or "none"
        state = "has 0 rows" if split in manifest["splits"] else "is not"
        raise FileNotFoundError(
            f"no shard for split {split!r} in {directory}: the split {state} in its manifest, expected files named "
            f"{split}-NNNNN.arrow (splits present: {available})"
        )
    entries.sort(key=lambda shard: int(SHARD_PATTERN.match(shard["file"])["index"]))
    schema, dataset = arrow_io.expected_schema(manifest), manifest.get("dataset")
    sources = [ShardSource(directory / e["file"], e["rows"], e["bytes"], e["sha256"], schema, dataset) for e in entries]
    for source in sources:
        if not source.path.is_file():
            raise ShardError(source.path, "listed in the manifest but missing; re-run the ingest pipeline")
    return sources


def list_shards(root: str | os.PathLike, dataset: str, split: str) -> list[Path]:
    """Shard files of ``<root>/<dataset>`` for ``split``, as its manifest lists them (see :func:`manifest_shards`)."""
    return [source.path for source in manifest_shards(Path(root) / dataset, split)]


def resolve_shard_sources(sources: SourceSpec | Sequence[SourceSpec], split: str | None = None) -> list[ShardSource]:
    """Turn source specs into an ordered list of :class:`ShardSource` (shard + manifest entry).

    Each spec is ``(root, dataset, split)``, ``(dataset_dir, split)``, a dataset directory (needs ``split``), or
    an ``.arrow`` shard path (which must be listed in its directory's manifest). A single spec may be passed on
    its own (a tuple is always one spec); several specs come as a list and are concatenated in that order.
    """
    if isinstance(sources, (str, os.PathLike, tuple)):
        sources = [sources]  # one spec; several specs come as a list
    shards: list[ShardSource] = []
    for spec in sources:
        if isinstance(spec, (tuple, list)):
            if len(spec) == 3:
                shards.extend(manifest_shards(Path(spec[0]) / spec[1], spec[2]))
            elif len(spec) == 2:
                shards.extend(manifest_shards(spec[0], spec[1]))
            else:
                raise ValueError(f"source {spec!r}: expected (root, dataset, split) or (dataset_dir, split)")
            continue
        path = Path(spec)
        if path.suffix == ".arrow":
            match = SHARD_PATTERN.match(path.name)
            if match is None:
                raise ValueError(f"source {path}: not a shard name (<split>-NNNNN.arrow)")
            listed = [s for s in manifest_shards(path.parent, match["split"]) if s.path.name == path.name]
            if not listed:
                raise ShardError(path, f"not listed in {path.parent / arrow_io.MANIFEST_NAME}")
            shards.extend(listed)
        else:
            if split is None:
                raise ValueError(f"source {path} is a dataset directory: pass split= to choose its shards")
            shards.extend(manifest_shards(path, split))
    if not shards:
        raise ValueError("no source given: pass at least one (root, dataset, split)")
    return shards


def resolve_sources(sources: SourceSpec | Sequence[SourceSpec], split: str | None = None) -> list[Path]:
    """Shard paths of :func:`resolve_shard_sources`, in order."""
    return [source.path for source in resolve_shard_sources(sources, split)]


def check_shard_files(shards: Sequence[ShardSource], verify: str = "size") -> None:
    """Byte sizes (and with ``verify="sha256"`` the hashes) of ``shards`` against their manifest entries.

    Row counts and schemas are checked by :class:`ShardedArrowTable` as it opens the shards. Raises
    :class:`ShardError` naming the first shard that differs.
    """
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")
    for shard in shards:
        try:
            size = shard.path.stat().st_size
        except OSError as error:
            raise ShardError(shard.path, f"cannot stat ({error.strerror or error})") from error
        if shard.bytes is not None and size != shard.bytes:
            raise ShardError(
                shard.path,
                f"{size} bytes, the manifest says {shard.bytes} (truncated or rewritten after ingestion); "
                "re-run the ingest pipeline or `vlmo verify` the dataset",
            )
        if verify == "sha256" and shard.sha256 is not None:
            digest = arrow_io.sha256_file(shard.path)
            if digest != shard.sha256:
                raise ShardError(
                    shard.path,
                    f"sha256 {digest[:12]}… differs from the manifest's {shard.sha256[:12]}… (changed after "
                    "ingestion); re-run the ingest pipeline",
                )


# ----------------------------------------------------------------------------------------- shard access
def _list_lengths(array: pa.Array) -> np.ndarray:
    """Per-row lengths of a (large) list array as int64, null lists counted as empty."""
    lengths = array.value_lengths().fill_null(0)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


class ShardedArrowTable:
    """The rows of several Arrow IPC shard files seen as one table, memory-mapped and opened lazily.

    Only metadata (row counts per record batch) is read at construction. Record batches are zero-copy views of
    the memory maps; a value is materialised only when asked for. At most ``max_open_shards`` shards stay open
    per process (least recently used closed first), so thousands of shards do not exhaust file descriptors.
    Pickling drops the open maps so each DataLoader worker reopens its own.

    Shards given as :class:`ShardSource` are checked as they are opened: row count and schema must be the
    manifest's. Any Arrow or OS error while opening or reading is a :class:`ShardError` naming the shard.
    """

    def __init__(
        self,
        shard_paths: Sequence[Path | ShardSource],
        required_columns: Iterable[str] = (),
        max_open_shards: int = 64,
    ) -> None:
        if max_open_shards < 1:
            raise ValueError(f"max_open_shards must be >= 1, got {max_open_shards}")
        sources = [item if isinstance(item, ShardSource) else ShardSource(Path(item)) for item in shard_paths]
        self.shard_paths = [source.path for source in sources]
        self.max_open_shards = max_open_shards
        # shard index -> (reader, {batch index -> record batch}), most recently used last
        self._open: OrderedDict[int, tuple[pa.ipc.RecordBatchFileReader, dict[int, pa.RecordBatch]]] = OrderedDict()
        self._owner_pid = os.getpid()
        required = list(required_columns)
        chunk_rows: list[int] = []
        chunk_shard: list[int] = []
        chunk_batch: list[int] = []
        common_columns: set[str] | None = None
        for shard_index, (path, source) in enumerate(zip(self.shard_paths, sources)):
            reader = self._reader(shard_index)
            wrong_schema = arrow_io.schema_problem(reader.schema, source.schema, source.dataset)
            if wrong_schema:
                raise ShardError(path, f"{wrong_schema}; re-run the ingest pipeline")
            missing = [name for name in required if reader.schema.get_field_index(name) < 0]
            if missing:
                raise ValueError(
                    f"{path}: column(s) {missing} missing (has {reader.schema.names}); see docs/data_layout.md"
                )
            names = set(reader.schema.names)
            common_columns = names if common_columns is None else common_columns & names
            shard_rows = 0
            for batch_index in range(reader.num_record_batches):
                rows = self._batch(shard_index, batch_index).num_rows
                shard_rows += rows
                chunk_rows.append(rows)
                chunk_shard.append(shard_index)
                chunk_batch.append(batch_index)
            if source.rows is not None and shard_rows != source.rows:
                raise ShardError(
                    path, f"{shard_rows} rows, the manifest says {source.rows}; re-run the ingest pipeline"
                )
        #: columns present in every shard (optional columns are used only when all shards have them)
        self.column_names = frozenset(common_columns or ())
        self.chunk_starts = np.concatenate([[0], np.cumsum(chunk_rows, dtype=np.int64)]).astype(np.int64)
        self.chunk_shard = np.asarray(chunk_shard, dtype=np.int32)
        self.chunk_batch = np.asarray(chunk_batch, dtype=np.int32)
        self.num_rows = int(self.chunk_starts[-1])

    # -- lazy handles -------------------------------------------------------------------------------------
    def _open_shard(self, shard_index: int) -> tuple[pa.ipc.RecordBatchFileReader, dict[int, pa.RecordBatch]]:
        if self._owner_pid != os.getpid():
            # A forked worker inherits handles it does not own; start with its own.
            self._open, self._owner_pid = OrderedDict(), os.getpid()
        entry = self._open.get(shard_index)
        if entry is not None:
            self._open.move_to_end(shard_index)
            return entry
        reader = arrow_io.open_ipc(self.shard_paths[shard_index])
        entry = (reader, {})
        self._open[shard_index] = entry
        while len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return entry

    def _reader(self, shard_index: int) -> pa.ipc.RecordBatchFileReader:
        return self._open_shard(shard_index)[0]

    def _batch(self, shard_index: int, batch_index: int) -> pa.RecordBatch:
        reader, batches = self._open_shard(shard_index)
        batch = batches.get(batch_index)
        if batch is None:
            if not 0 <= batch_index < reader.num_record_batches:
                raise ShardError(
                    self.shard_paths[shard_index],
                    f"has {reader.num_record_batches} record batches (changed since it was opened?)",
                    batch=batch_index,
                )
            batch = arrow_io.read_batch(reader, self.shard_paths[shard_index], batch_index)
            batches[batch_index] = batch
        return batch

    def open_shard_count(self) -> int:
        """Shards currently held open by this process (bounded by ``max_open_shards``)."""
        return len(self._open)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._owner_pid = os.getpid()

    # -- access -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_rows

    def has_column(self, name: str) -> bool:
        return name in self.column_names

    def locate(self, row: int) -> tuple[int, int, int]:
        """(shard index, record-batch index, row within the batch) of a global row."""
        if not 0 <= row < self.num_rows:
            raise IndexError(f"row {row} out of range for {self.num_rows} rows")
        chunk = int(np.searchsorted(self.chunk_starts, row, side="right")) - 1
        return int(self.chunk_shard[chunk]), int(self.chunk_batch[chunk]), int(row - self.chunk_starts[chunk])

    def where(self, row: int) -> str:
        """Human-readable location of a global row: ``<shard path> row <n>`` (row within the shard)."""
        return f"{self.shard_paths[self.locate(row)[0]]} row {self._row_in_shard(row)}"

    def scalar(self, row: int, column: str) -> pa.Scalar:
        shard_index, batch_index, local_row = self.locate(row)
        batch = self._batch(shard_index, batch_index)
        try:
            return batch.column(column)[local_row]
        except (pa.ArrowException, OSError, IndexError) as error:
            raise self._cell_error(row, repr(column), error) from error

    def _cell_error(self, row: int, what: str, error: BaseException) -> ShardError:
        shard_index, batch_index, _ = self.locate(row)
        return ShardError(
            self.shard_paths[shard_index],
            f"{what} unreadable ({error})",
            batch=batch_index,
            row=self._row_in_shard(row),
        )

    def value(self, row: int, column: str) -> Any:
        """Python value of one cell."""
        cell = self.scalar(row, column)
        try:
            return cell.as_py()
        except (pa.ArrowException, UnicodeDecodeError, ValueError) as error:
            raise self._cell_error(row, repr(column), error) from error

    def list_item(self, row: int, column: str, position: int) -> Any:
        """Python value of element ``position`` of the list stored in one cell, without converting the list."""
        cell = self.scalar(row, column)
        try:
            return cell.values[position].as_py()
        except (pa.ArrowException, IndexError, TypeError, UnicodeDecodeError) as error:
            raise self._cell_error(row, f"{column}[{position}]", error) from error

    def _row_in_shard(self, row: int) -> int:
        shard_index, batch_index, local_row = self.locate(row)
        return local_row + sum(self._batch(shard_index, earlier).num_rows for earlier in range(batch_index))

    def column_chunks(self, column: str) -> Iterable[pa.Array]:
        """The column, record batch by record batch, in global row order (zero-copy)."""
        for shard_index, batch_index in zip(self.chunk_shard, self.chunk_batch):
            yield self._batch(int(shard_index), int(batch_index)).column(column)

    def list_lengths(self, column: str) -> np.ndarray:
        """Length of the list in every row of a list column, int64 (num_rows,)."""
        parts = [_list_lengths(chunk) for chunk in self.column_chunks(column)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def nested_list_lengths(self, column: str) -> np.ndarray:
        """For a list<list<...>> column: length of every inner list, flattened in row order."""
        parts = [_list_lengths(chunk.flatten()) for chunk in self.column_chunks(column)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def expand_lists(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row_of_sample int64, position_in_row int32): one entry per list element, from per-row lengths."""
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    row_starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]]) if len(lengths) else lengths
    positions = np.arange(len(rows), dtype=np.int64) - np.repeat(row_starts, lengths)
    return rows, positions.astype(np.int32)
