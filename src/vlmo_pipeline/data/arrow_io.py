"""Arrow shard writing and reading: schemas, the streaming :class:`ShardWriter`, manifest and reject log.

(About 650 lines: the whole on-disk contract of a dataset folder (schemas, shard names, writer, manifest,
verification) in one place, so the writer and ``vlmo verify`` cannot drift apart; the reader side is
``data/shards.py``.)

On-disk contract (docs/data_layout.md): a dataset directory holds ``<split>-NNNNN.arrow`` shards in the Arrow IPC
*file* format, a ``manifest.json`` written last, and ``rejects.jsonl``. Every file is first written under a
hidden temporary name (``.<name>.tmp``), flushed and fsynced, then ``os.replace``d into place, so a killed run
never leaves a truncated shard under a real name; :func:`prepare_output_dir` removes such leftovers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmo_pipeline.data.raw.records import Reject
from vlmo_pipeline.files import atomic_write_json, fsync_directory

SCHEMA_VERSION = 1

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
#: Written by an ingestion whose outcome checks failed (instead of the manifest); same name as ``ingest.FAILURE_NAME``.
FAILURE_NAME = "ingest_failed.json"
#: The one definition of a shard's file name, ``<split>-NNNNN.arrow`` (the writer's hidden temp names never match).
SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5,})\.arrow$")
#: How much :func:`check_shard` (and the Datasets at open) verifies: ``size`` = existence, byte size, row count and
#: schema (cheap: stat + the IPC footer); ``sha256`` = all of that plus the hash of every byte.
VERIFY_LEVELS = ("size", "sha256")


def shard_name(split: str, index: int) -> str:
    """File name of shard ``index`` of ``split`` (the form :data:`SHARD_PATTERN` matches)."""
    return f"{split}-{index:05d}.arrow"


class DatasetNotReadyError(FileNotFoundError):
    """A dataset directory that is missing, was never completely written, or whose ingestion failed."""


class ManifestError(ValueError):
    """A ``manifest.json`` that cannot be read or does not have the manifest's shape."""


class ShardError(ValueError):
    """A shard that cannot be read or does not match its manifest entry; the message starts with the shard path.

    ``path``, ``batch`` (record-batch index) and ``row`` (row within the shard) say where, when known.
    """

    def __init__(self, path: str | os.PathLike, problem: str, *, batch: int | None = None, row: int | None = None):
        self.path = Path(path)
        self.batch = batch
        self.row = row
        self.problem = problem
        where = "".join(
            [f" record batch {batch}" if batch is not None else "", f" row {row}" if row is not None else ""]
        )
        super().__init__(f"{self.path}{where}: {problem}")


_CAPTION_FIELDS = [
    pa.field("image", pa.binary()),
    pa.field("caption", pa.list_(pa.string())),
    pa.field("image_id", pa.string()),
    pa.field("split", pa.string()),
]
CAPTION_SCHEMA = pa.schema(_CAPTION_FIELDS)

VQA_SCHEMA = pa.schema(
    [
        pa.field("image", pa.binary()),
        pa.field("questions", pa.list_(pa.string())),
        pa.field("answers", pa.list_(pa.list_(pa.string()))),
        pa.field("answer_labels", pa.list_(pa.list_(pa.int64()))),
        pa.field("answer_scores", pa.list_(pa.list_(pa.float64()))),
        pa.field("image_id", pa.int64()),
        pa.field("question_id", pa.list_(pa.int64())),
        pa.field("answer_type", pa.list_(pa.string())),
        pa.field("split", pa.string()),
    ]
)

NLVR2_SCHEMA = pa.schema(
    [
        pa.field("image_0", pa.binary()),
        pa.field("image_1", pa.binary()),
        pa.field("questions", pa.list_(pa.string())),
        pa.field("answers", pa.list_(pa.string())),
        pa.field("identifier", pa.string()),
        pa.field("split", pa.string()),
    ]
)

TEXT_SCHEMA = pa.schema(
    [
        pa.field("caption", pa.list_(pa.string())),
        pa.field("source", pa.string()),
        pa.field("split", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "coco": CAPTION_SCHEMA,
    "f30k": CAPTION_SCHEMA,
    "vg": CAPTION_SCHEMA,
    "cc3m": CAPTION_SCHEMA,
    "sbu": CAPTION_SCHEMA,
    "vqav2": VQA_SCHEMA,
    "nlvr2": NLVR2_SCHEMA,
    "text": TEXT_SCHEMA,
}


def schema_for(dataset: str) -> pa.Schema:
    """The Arrow schema of ``dataset``'s shards, tagged with the dataset name and :data:`SCHEMA_VERSION`."""
    if dataset not in SCHEMAS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(SCHEMAS)}")
    metadata = {"vlmo_pipeline.dataset": dataset, "vlmo_pipeline.schema_version": str(SCHEMA_VERSION)}
    return SCHEMAS[dataset].with_metadata(metadata)


# --- small file helpers -----------------------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def sha256_file(path: str | os.PathLike, block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON with a final newline, atomically (:mod:`vlmo_pipeline.files`)."""
    atomic_write_json(path, obj, indent=2, ensure_ascii=False)


def prepare_output_dir(out_dir: str | os.PathLike, extra_files: Iterable[str] = ()) -> Path:
    """Make ``out_dir`` ready for a fresh write of one dataset.

    Removes, in this order: the manifest (so the directory reads as incomplete from here on), stale hidden
    ``.*.tmp`` files of a killed run, old shards, the old reject log and ``extra_files``. Nothing else is touched.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for entry in out_dir.iterdir():
        if not entry.is_file():
            continue
        stale_tmp = entry.name.startswith(".") and entry.name.endswith(".tmp")
        if stale_tmp or SHARD_PATTERN.match(entry.name):
            entry.unlink()
    (out_dir / REJECTS_NAME).unlink(missing_ok=True)
    for name in extra_files:
        (out_dir / name).unlink(missing_ok=True)
    fsync_directory(out_dir)
    return out_dir


# --- shards -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard, as listed in the manifest."""

    file: str
    split: str
    rows: int
    sha256: str
    bytes: int


def estimate_row_bytes(value: Any) -> int:
    """Rough payload size of a row (bytes/str lengths plus 8 per scalar, plus 8 per list) used to cap batch and
    shard sizes."""
    # Exact-type fast paths for what rows are made of (called once per row, it was ~3 % of an ingest); anything
    # else goes through the general rules below, which give the same numbers.
    kind = type(value)
    if kind is bytes or kind is str:
        return len(value)
    if kind is dict:
        return sum(map(estimate_row_bytes, value.values()))
    if kind is list:
        if all(type(item) is str for item in value):
            return sum(map(len, value)) + 8
        return sum(map(estimate_row_bytes, value)) + 8
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(estimate_row_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(estimate_row_bytes(v) for v in value) + 8
    return 8


class ShardWriter:
    """Stream rows of one split into ``<split>-NNNNN.arrow`` shards of bounded size.

    Rows are buffered into record batches of at most ``batch_rows`` rows / ``batch_bytes`` payload bytes and
    appended to the shard being written (hidden temporary name); when a shard reaches ``shard_rows`` rows or
    ``shard_bytes`` payload bytes (either limit may be None, not both) it is closed, fsynced, hashed and renamed.
    Peak memory is therefore one batch, whatever the shard or split size.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        split: str,
        schema: pa.Schema,
        shard_rows: int | None = 5000,
        shard_bytes: int | None = 256 << 20,
        batch_rows: int = 256,
        batch_bytes: int = 32 << 20,
    ):
        if shard_rows is None and shard_bytes is None:
            raise ValueError("set shard_rows or shard_bytes (or both)")
        if (shard_rows is not None and shard_rows < 1) or (shard_bytes is not None and shard_bytes < 1):
            raise ValueError(f"shard limits must be positive, got rows={shard_rows} bytes={shard_bytes}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", split):
            raise ValueError(f"split name {split!r} must be letters, digits or underscores")
        self.out_dir = Path(out_dir)
        self.split = split
        self.schema = schema
        self.shard_rows = shard_rows
        self.shard_bytes = shard_bytes
        self.batch_rows = max(1, min(batch_rows, shard_rows or batch_rows))
        self.batch_bytes = batch_bytes
        self.shards: list[ShardInfo] = []
        self.rows_written = 0
        # The batch being filled, column by column (what Arrow builds arrays from; no per-row dict is kept).
        self._names = list(schema.names)
        self._columns: list[list[Any]] = [[] for _ in self._names]
        self._batch_rows = 0
        self._batch_payload = 0
        self._shard_rows = 0
        self._shard_payload = 0
        self._sink: pa.OSFile | None = None
        self._ipc: pa.ipc.RecordBatchFileWriter | None = None
        self._closed = False

    # paths of the shard currently being written
    def _final_path(self) -> Path:
        return self.out_dir / shard_name(self.split, len(self.shards))

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (a mapping with exactly the schema's columns)."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        payload = estimate_row_bytes(row)
        for column, name in zip(self._columns, self._names):
            column.append(row.get(name))  # a missing column is null, as RecordBatch.from_pylist makes it
        self._batch_rows += 1
        self._batch_payload += payload
        self._shard_rows += 1
        self._shard_payload += payload
        shard_full = (self.shard_rows is not None and self._shard_rows >= self.shard_rows) or (
            self.shard_bytes is not None and self._shard_payload >= self.shard_bytes
        )
        if shard_full:
            self._flush_batch()
            self._finish_shard()
        elif self._batch_rows >= self.batch_rows or self._batch_payload >= self.batch_bytes:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if not self._batch_rows:
            return
        # from_pylist(rows) would first transpose the rows into exactly these lists; the arrays (and so the
        # shard bytes) are the same.
        batch = pa.RecordBatch.from_pydict(dict(zip(self._names, self._columns)), schema=self.schema)
        if self._ipc is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(_tmp_name(self._final_path())), "wb")
            self._ipc = pa.ipc.new_file(self._sink, self.schema)
        self._ipc.write_batch(batch)
        self._columns = [[] for _ in self._names]
        self._batch_rows = 0
        self._batch_payload = 0

    def _finish_shard(self) -> None:
        if self._ipc is None:
            return
        final = self._final_path()
        tmp = _tmp_name(final)
        self._ipc.close()
        self._sink.close()
        self._ipc = self._sink = None
        # Make the bytes durable before the rename publishes them under the real name.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, final)
        fsync_directory(self.out_dir)
        self.shards.append(ShardInfo(final.name, self.split, self._shard_rows, digest, size))
        self.rows_written += self._shard_rows
        self._shard_rows = 0
        self._shard_payload = 0

    def close(self) -> list[ShardInfo]:
        """Flush the last partial shard and return every shard written."""
        if not self._closed:
            self._flush_batch()
            self._finish_shard()
            self._closed = True
        return list(self.shards)

    def abort(self) -> None:
        """Drop the shard in progress (its temporary file); finished shards stay."""
        if self._ipc is not None:
            tmp = _tmp_name(self._final_path())
            try:
                self._ipc.close()
                self._sink.close()
            except Exception:  # the writer may be in a broken state; the file is discarded anyway
                pass
            self._ipc = self._sink = None
            tmp.unlink(missing_ok=True)
        self._columns = [[] for _ in self._names]
        self._batch_rows = 0
        self._closed = True


class SplitWriters:
    """One :class:`ShardWriter` per split, created on first use (rows of several splits arrive interleaved)."""

    def __init__(self, out_dir: str | os.PathLike, schema: pa.Schema, **writer_options: Any):
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.writer_options = writer_options
        self.writers: dict[str, ShardWriter] = {}

    def write(self, split: str, row: Mapping[str, Any]) -> None:
        writer = self.writers.get(split)
        if writer is None:
            writer = self.writers[split] = ShardWriter(self.out_dir, split, self.schema, **self.writer_options)
        writer.write(row)

    def close(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        for split in sorted(self.writers):
            shards.extend(self.writers[split].close())
        return shards

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


# --- rejects ----------------------------------------------------------------------------------------------------


class RejectLog:
    """Collects rejects into ``rejects.jsonl`` (one JSON object per line), published atomically on close."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / REJECTS_NAME
        self._tmp = _tmp_name(self.path)
        self._handle = open(self._tmp, "w", encoding="utf-8")
        self.by_reason: Counter[str] = Counter()

    def add(self, reject: Reject) -> None:
        self._handle.write(json.dumps(reject.to_json(), ensure_ascii=False) + "\n")
        self.by_reason[reject.reason] += 1

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())

    def close(self) -> None:
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)


def read_rejects(dataset_dir: str | os.PathLike) -> list[dict[str, str]]:
    """All entries of a dataset's ``rejects.jsonl`` (empty list when the file is absent)."""
    path = Path(dataset_dir) / REJECTS_NAME
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --- manifest and reading ---------------------------------------------------------------------------------------


def write_manifest(out_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (call it last: its presence marks the dataset as complete)."""
    path = Path(out_dir) / MANIFEST_NAME
    write_json_atomic(path, dict(manifest))
    return path


def shard_infos_to_json(shards: Iterable[ShardInfo]) -> list[dict[str, Any]]:
    return [asdict(shard) for shard in shards]


def _failure_note(dataset_dir: Path) -> str:
    """The problems an ``ingest_failed.json`` lists, as one short clause (empty when it is unreadable)."""
    try:
        with open(dataset_dir / FAILURE_NAME, encoding="utf-8") as handle:
            problems = json.load(handle).get("problems") or []
    except (OSError, ValueError, AttributeError):
        return ""
    return f" ({'; '.join(str(problem) for problem in problems[:3])})" if problems else ""


def load_manifest(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check a dataset's manifest.

    Refuses (:class:`DatasetNotReadyError`, naming the directory) a missing directory, a directory whose
    ingestion failed (``ingest_failed.json``) and one without ``manifest.json`` (never completely written);
    a manifest that is not JSON, has another ``schema_version`` or lists shards badly is a :class:`ManifestError`.
    """
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / MANIFEST_NAME
    if not dataset_dir.is_dir():
        raise DatasetNotReadyError(
            f"{dataset_dir}: no {MANIFEST_NAME}: the dataset directory does not exist; run the ingest pipeline for "
            "this dataset first"
        )
    if (dataset_dir / FAILURE_NAME).exists():
        raise DatasetNotReadyError(
            f"{dataset_dir}: the last ingestion of this dataset failed{_failure_note(dataset_dir)}; see "
            f"{dataset_dir / FAILURE_NAME}, repair the raw data or the parameters and re-run the ingest pipeline"
        )
    if not path.is_file():
        raise DatasetNotReadyError(
            f"{dataset_dir}: no {MANIFEST_NAME} (the dataset was never completely written); run the ingest "
            "pipeline for this dataset first"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: unreadable manifest ({error}); re-run the ingest pipeline") from error
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: not a dataset manifest (a JSON object expected)")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema_version {manifest.get('schema_version')!r}, this code reads {SCHEMA_VERSION}; re-ingest"
        )
    _check_manifest_shape(path, manifest)
    return manifest


def _check_manifest_shape(path: Path, manifest: dict[str, Any]) -> None:
    splits, shards = manifest.get("splits"), manifest.get("shards")
    if not isinstance(splits, dict) or not isinstance(shards, list):
        raise ManifestError(f"{path}: not a dataset manifest (needs 'splits' object and 'shards' list)")
    rows_by_split: Counter[str] = Counter()
    for position, shard in enumerate(shards):
        fields = {"file": str, "split": str, "rows": int, "sha256": str, "bytes": int}
        if not isinstance(shard, dict) or any(not isinstance(shard.get(k), t) for k, t in fields.items()):
            raise ManifestError(f"{path}: shard entry {position} needs {', '.join(fields)}; got {shard!r}")
        match = SHARD_PATTERN.match(shard["file"])
        if match is None or match["split"] != shard["split"]:
            raise ManifestError(
                f"{path}: shard entry {position}: file {shard['file']!r} is not a {shard['split']} shard"
            )
        if shard["split"] not in splits:
            raise ManifestError(f"{path}: shard {shard['file']} belongs to split {shard['split']!r}, not in 'splits'")
        rows_by_split[shard["split"]] += shard["rows"]
    for split, rows in splits.items():
        if rows != rows_by_split[split]:
            raise ManifestError(f"{path}: split {split!r} has {rows} rows but its shards list {rows_by_split[split]}")


def expected_schema(manifest: Mapping[str, Any]) -> pa.Schema | None:
    """The schema a dataset's shards must have (by the manifest's ``dataset`` kind); None for an unknown kind."""
    dataset = manifest.get("dataset")
    return SCHEMAS.get(dataset) if isinstance(dataset, str) else None


def schema_problem(actual: pa.Schema, expected: pa.Schema | None, dataset: str | None) -> str | None:
    """Why ``actual`` is not the expected schema of ``dataset`` (None when it is; metadata is not compared)."""
    if expected is None or actual.equals(expected, check_metadata=False):
        return None
    want = {field.name: field.type for field in expected}
    have = {field.name: field.type for field in actual}
    differences = [f"missing {name}" for name in want if name not in have]
    differences += [f"unexpected {name}" for name in have if name not in want]
    differences += [
        f"{name} is {have[name]}, not {want[name]}" for name in want if name in have and have[name] != want[name]
    ]
    if not differences:
        differences = [f"columns in order {list(have)}, expected {list(want)}"]
    return f"schema is not the {dataset} schema ({'; '.join(differences)})"


def split_shards(dataset_dir: str | os.PathLike, split: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, manifest entries of ``split``'s shards in order); a split the manifest lacks is a KeyError."""
    manifest = load_manifest(dataset_dir)
    if split not in manifest["splits"]:
        raise KeyError(f"{Path(dataset_dir)}: no split {split!r}; manifest has {sorted(manifest['splits'])}")
    entries = [shard for shard in manifest["shards"] if shard["split"] == split]
    return manifest, sorted(entries, key=lambda shard: int(SHARD_PATTERN.match(shard["file"])["index"]))


def shard_paths(dataset_dir: str | os.PathLike, split: str) -> list[Path]:
    """Paths of ``split``'s shards in order, as listed by the manifest (each must exist)."""
    dataset_dir = Path(dataset_dir)
    _, entries = split_shards(dataset_dir, split)
    paths = [dataset_dir / shard["file"] for shard in entries]
    for path in paths:
        if not path.is_file():
            raise ShardError(path, "listed in the manifest but missing; re-ingest the dataset")
    return paths


def open_ipc(path: str | os.PathLike) -> pa.ipc.RecordBatchFileReader:
    """Memory-map one shard and open its IPC footer; any Arrow or OS error is a :class:`ShardError` naming it."""
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except FileNotFoundError as error:
        raise ShardError(path, "missing") from error
    except (pa.ArrowException, OSError) as error:
        raise ShardError(path, f"not a readable Arrow IPC file ({error})") from error


def read_batch(reader: pa.ipc.RecordBatchFileReader, path: str | os.PathLike, index: int) -> pa.RecordBatch:
    """Record batch ``index`` of an open shard; a damaged batch message is a :class:`ShardError` naming both."""
    try:
        return reader.get_batch(index)
    except (pa.ArrowException, OSError) as error:
        raise ShardError(path, f"unreadable ({error})", batch=index) from error


def open_shard(path: str | os.PathLike) -> pa.Table:
    """Memory-map one shard and return it as a (zero-copy, lazily paged) table."""
    reader = open_ipc(path)
    return pa.Table.from_batches(
        [read_batch(reader, path, index) for index in range(reader.num_record_batches)], schema=reader.schema
    )


def read_split(dataset_dir: str | os.PathLike, split: str) -> pa.Table:
    """All shards of one split, memory-mapped and concatenated (no copy of the data)."""
    paths = shard_paths(dataset_dir, split)
    if not paths:
        return schema_for(load_manifest(dataset_dir)["dataset"]).empty_table()
    return pa.concat_tables([open_shard(path) for path in paths])


def check_shard(
    path: Path, entry: Mapping[str, Any], schema: pa.Schema | None, dataset: str | None, level: str = "sha256"
) -> list[str]:
    """Problems of one shard against its manifest entry (``"<path>: <what>"`` strings; empty when it is fine).

    ``level`` is one of :data:`VERIFY_LEVELS`. Every record batch is read, so a damaged batch message is found.
    """
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify level must be one of {VERIFY_LEVELS}, got {level!r}")
    if not path.is_file():
        return [f"{path}: listed in the manifest but missing"]
    size = path.stat().st_size
    if size != entry["bytes"]:
        return [f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or rewritten)"]
    problems = []
    if level == "sha256":
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            problems.append(
                f"{path}: sha256 {digest[:12]}… differs from the manifest's {entry['sha256'][:12]}… "
                "(contents changed in place)"
            )
    try:
        reader = open_ipc(path)
        rows = sum(read_batch(reader, path, index).num_rows for index in range(reader.num_record_batches))
    except ShardError as error:
        return [*problems, str(error)]
    if rows != entry["rows"]:
        problems.append(f"{path}: {rows} rows, the manifest says {entry['rows']}")
    wrong_schema = schema_problem(reader.schema, schema, dataset)
    if wrong_schema:
        problems.append(f"{path}: {wrong_schema}")
    return problems


def check_rejects(dataset_dir: Path, expected: Any = None) -> list[str]:
    """Problems of ``rejects.jsonl``: unreadable, a line not a JSON object, or a count the manifest contradicts."""
    path = dataset_dir / REJECTS_NAME
    if not path.exists():
        return [f"{path}: missing (the manifest counts {expected} rejects)"] if expected else []
    count = 0
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as error:
                    return [f"{path} line {number}: not JSON ({error.msg})"]
                if not isinstance(entry, dict):
                    return [f"{path} line {number}: not a JSON object"]
                count += 1
    except (OSError, UnicodeDecodeError) as error:
        return [f"{path}: unreadable ({error})"]
    if isinstance(expected, int) and count != expected:
        return [f"{path}: {count} rejects, the manifest says {expected}"]
    return []


def verify_dataset(dataset_dir: str | os.PathLike, level: str = "sha256") -> list[str]:
    """Check a dataset directory against its manifest; return its problems (``"<path>: <what>"``), empty if none.

    Every listed shard must exist with the manifest's size, sha256 (``level="sha256"``), row count and the
    dataset kind's schema; shard files the manifest does not list are reported; ``rejects.jsonl`` must be JSON
    lines with the manifest's count. A directory that cannot be read as a dataset at all is one problem.
    """
    dataset_dir = Path(dataset_dir)
    try:
        manifest = load_manifest(dataset_dir)
    except (DatasetNotReadyError, ManifestError) as error:
        return [str(error)]
    schema = expected_schema(manifest)
    problems = []
    listed = {shard["file"] for shard in manifest["shards"]}
    for shard in manifest["shards"]:
        problems += check_shard(dataset_dir / shard["file"], shard, schema, manifest.get("dataset"), level)
    for path in sorted(dataset_dir.iterdir()):
        if SHARD_PATTERN.match(path.name) and path.name not in listed:
            problems.append(f"{path}: shard file not listed in the manifest (left over or added by hand)")
    problems += check_rejects(dataset_dir, manifest.get("rejects"))
    return problems
