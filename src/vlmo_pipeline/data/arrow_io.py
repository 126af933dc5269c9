"""Arrow shard writing and reading: schemas, the streaming :class:`ShardWriter`, manifest and reject log.

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
SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})\.arrow$")

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
    """Rough payload size of a row (bytes/str lengths plus 8 per scalar) used to cap batch and shard sizes."""
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
        self._batch: list[dict[str, Any]] = []
        self._batch_payload = 0
        self._shard_rows = 0
        self._shard_payload = 0
        self._sink: pa.OSFile | None = None
        self._ipc: pa.ipc.RecordBatchFileWriter | None = None
        self._closed = False

    # paths of the shard currently being written
    def _final_path(self) -> Path:
        return self.out_dir / f"{self.split}-{len(self.shards):05d}.arrow"

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (a mapping with exactly the schema's columns)."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        payload = estimate_row_bytes(row)
        self._batch.append(dict(row))
        self._batch_payload += payload
        self._shard_rows += 1
        self._shard_payload += payload
        shard_full = (self.shard_rows is not None and self._shard_rows >= self.shard_rows) or (
            self.shard_bytes is not None and self._shard_payload >= self.shard_bytes
        )
        if shard_full:
            self._flush_batch()
            self._finish_shard()
        elif len(self._batch) >= self.batch_rows or self._batch_payload >= self.batch_bytes:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        batch = pa.RecordBatch.from_pylist(self._batch, schema=self.schema)
        if self._ipc is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(_tmp_name(self._final_path())), "wb")
            self._ipc = pa.ipc.new_file(self._sink, self.schema)
        self._ipc.write_batch(batch)
        self._batch = []
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
        self._batch = []
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


def load_manifest(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Read a dataset's manifest; a missing manifest means the dataset was never (completely) written."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest.json; run the ingest pipeline for this dataset first")
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {manifest.get('schema_version')!r}, this code reads {SCHEMA_VERSION}; re-ingest"
        )
    return manifest


def shard_paths(dataset_dir: str | os.PathLike, split: str) -> list[Path]:
    """Paths of ``split``'s shards in order, as listed by the manifest (each must exist)."""
    dataset_dir = Path(dataset_dir)
    manifest = load_manifest(dataset_dir)
    if split not in manifest["splits"]:
        raise KeyError(f"{dataset_dir}: no split {split!r}; manifest has {sorted(manifest['splits'])}")
    paths = [dataset_dir / shard["file"] for shard in manifest["shards"] if shard["split"] == split]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in the manifest but missing; re-ingest the dataset")
    return paths


def open_shard(path: str | os.PathLike) -> pa.Table:
    """Memory-map one shard and return it as a (zero-copy, lazily paged) table."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except pa.ArrowInvalid as error:
        raise ValueError(f"{path}: not a readable Arrow IPC file ({error})") from error
    return reader.read_all()


def read_split(dataset_dir: str | os.PathLike, split: str) -> pa.Table:
    """All shards of one split, memory-mapped and concatenated (no copy of the data)."""
    paths = shard_paths(dataset_dir, split)
    if not paths:
        return schema_for(load_manifest(dataset_dir)["dataset"]).empty_table()
    return pa.concat_tables([open_shard(path) for path in paths])


def verify_dataset(dataset_dir: str | os.PathLike) -> list[str]:
    """Check every shard in the manifest against its sha256, size and row count; return a list of problems."""
    dataset_dir = Path(dataset_dir)
    manifest = load_manifest(dataset_dir)
    problems = []
    for shard in manifest["shards"]:
        path = dataset_dir / shard["file"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if path.stat().st_size != shard["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
        elif sha256_file(path) != shard["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest")
        elif open_shard(path).num_rows != shard["rows"]:
            problems.append(f"{path}: row count differs from the manifest")
    return problems
