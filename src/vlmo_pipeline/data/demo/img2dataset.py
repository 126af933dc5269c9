"""The img2dataset side of the demo's CC3M and SBU: a simulated download (about 2 % of rows fail) and the output
folder img2dataset leaves after it (the layout :mod:`vlmo_pipeline.data.raw.img2dataset` reads).

Real CC3M and SBU users download the images with img2dataset. Its output folder holds, per shard of
``samples_per_shard`` input rows (shard names ``%05d``):

* *files* layout: a folder ``00000/`` with ``<key>.jpg``, ``<key>.txt`` (the caption) and ``<key>.json`` (the
  row's metadata, ``json.dumps(meta, indent=4)``) for every successful row;
* *webdataset* layout: ``00000.tar`` holding the same three members per successful row;
* in both: ``00000.parquet`` with one row per input row (failed ones too) and ``00000_stats.json``.

The key of input row ``i`` of shard ``s`` is ``s * 10**k + i`` zero-padded to ``5 + k`` digits, where
``k = ceil(log10(samples_per_shard))`` (9 digits for img2dataset's default 10,000 rows per shard).
Parquet columns, in img2dataset's order for a caption+url input: caption, url, key, status, error_message,
width, height, original_width, original_height, exif, sha256.

Everything here is deterministic: no clock reads (the stats' times derive from a fixed epoch), fixed tar
member metadata, parquet written from an explicit schema.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from vlmo_pipeline.data.demo.output import atomic_write_bytes, atomic_write_json
from vlmo_pipeline.data.demo.scene import encode_jpeg, render_scene, sample_scene

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World

# 2021-06-01 00:00:00 UTC: a fixed "download time" so the tree is byte-identical for a seed.
FIXED_EPOCH = 1622505600.0

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("caption", pa.string()),
        pa.field("url", pa.string()),
        pa.field("key", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
        pa.field("exif", pa.string()),
        pa.field("sha256", pa.string()),
    ]
)

OUTPUT_FORMATS = ("files", "webdataset")

FAILED_DOWNLOAD_RATE = 0.02
DOWNLOAD_ERRORS = (
    "HTTP Error 404: Not Found",
    "HTTP Error 403: Forbidden",
    "<urlopen error [Errno -2] Name or service not known>",
    "The read operation timed out",
)


# --------------------------------------------------------------------------------------------- img2dataset


@dataclass(frozen=True)
class DownloadRow:
    """One input row (caption, url) and what the "download" produced.

    ``image`` is the encoded JPEG, or ``None`` for a row whose download failed; then ``error_message`` says why.
    """

    caption: str
    url: str
    image: bytes | None
    width: int | None = None
    height: int | None = None
    error_message: str | None = None


def sample_key(index_in_shard: int, shard_id: int, samples_per_shard: int) -> str:
    """img2dataset's key: shard id and row index concatenated, zero-padded."""
    digits = max(1, math.ceil(math.log10(samples_per_shard)))
    return f"{shard_id * 10**digits + index_in_shard:0{5 + digits}d}"


def write_img2dataset(
    output_folder: str | Path,
    rows: Iterable[DownloadRow],
    output_format: str = "files",
    samples_per_shard: int = 10_000,
) -> dict[str, int]:
    """Write ``rows`` (in input order) as an img2dataset output folder; return totals.

    Rows are consumed lazily, one shard at a time, so memory stays bounded by one shard's metadata.
    Returns ``{"count", "successes", "failed_to_download", "shards"}``.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    totals = Counter()
    for shard_id, shard_rows in enumerate(_chunks(rows, samples_per_shard)):
        shard_totals = _write_shard(output_folder, shard_id, shard_rows, output_format, samples_per_shard)
        totals.update(shard_totals)
        totals["shards"] += 1
    return {key: int(totals[key]) for key in ("count", "successes", "failed_to_download", "shards")}


def _chunks(rows: Iterable[DownloadRow], size: int) -> Iterator[list[DownloadRow]]:
    chunk: list[DownloadRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_shard(
    output_folder: Path, shard_id: int, rows: list[DownloadRow], output_format: str, samples_per_shard: int
) -> Counter:
    shard_name = f"{shard_id:05d}"
    metadata: list[dict] = []
    status_counts: Counter = Counter()
    tar_buffer = io.BytesIO() if output_format == "webdataset" else None
    tar = tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) if tar_buffer is not None else None
    for index, row in enumerate(rows):
        key = sample_key(index, shard_id, samples_per_shard)
        meta = _row_metadata(row, key)
        metadata.append(meta)
        if row.image is None:
            status_counts[row.error_message or "failed_to_download"] += 1
            continue
        status_counts["success"] += 1
        members = {
            "jpg": row.image,
            "json": json.dumps(meta, indent=4).encode("utf-8"),
            "txt": row.caption.encode("utf-8"),
        }
        if tar is not None:
            for extension in sorted(members):  # webdataset writes a sample's members in sorted extension order
                _add_tar_member(tar, f"{key}.{extension}", members[extension])
        else:
            for extension, payload in members.items():
                atomic_write_bytes(output_folder / shard_name / f"{key}.{extension}", payload)
    if tar is not None:
        tar.close()
        atomic_write_bytes(output_folder / f"{shard_name}.tar", tar_buffer.getvalue())
    elif not (output_folder / shard_name).exists():
        (output_folder / shard_name).mkdir(parents=True)  # img2dataset creates the folder even if all rows failed

    table = pa.Table.from_pylist(metadata, schema=PARQUET_SCHEMA)
    parquet_buffer = io.BytesIO()
    pq.write_table(table, parquet_buffer)
    atomic_write_bytes(output_folder / f"{shard_name}.parquet", parquet_buffer.getvalue())

    successes = status_counts["success"]
    failed = len(rows) - successes
    start_time = FIXED_EPOCH + 600.0 * shard_id
    duration = round(0.004 * len(rows), 3)
    stats = {
        "count": len(rows),
        "successes": successes,
        "failed_to_download": failed,
        "failed_to_resize": 0,
        "duration": duration,
        "start_time": start_time,
        "end_time": start_time + duration,
        "status_dict": dict(sorted(status_counts.items())),
    }
    atomic_write_json(output_folder / f"{shard_name}_stats.json", stats, indent=4)
    return Counter({"count": len(rows), "successes": successes, "failed_to_download": failed})


def _row_metadata(row: DownloadRow, key: str) -> dict:
    """The per-row metadata img2dataset stores in the parquet and in ``<key>.json``."""
    ok = row.image is not None
    return {
        "caption": row.caption,
        "url": row.url,
        "key": key,
        "status": "success" if ok else "failed_to_download",
        "error_message": None if ok else (row.error_message or "failed_to_download"),
        "width": row.width if ok else None,
        "height": row.height if ok else None,
        "original_width": row.width if ok else None,
        "original_height": row.height if ok else None,
        "exif": "{}" if ok else None,  # our JPEGs carry no EXIF; exifread reports an empty dict
        "sha256": hashlib.sha256(row.image).hexdigest() if ok else None,
    }


def _add_tar_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o444
    info.mtime = int(FIXED_EPOCH)
    info.uname = info.gname = "demo"
    tar.addfile(info, io.BytesIO(payload))


# --------------------------------------------------------------------------------------------- simulated download


def _failed_indices(rng: random.Random, count: int) -> set[int]:
    """About 2% of rows fail to download (at least one once there are 5 rows), like real img2dataset runs."""
    n_failed = round(count * FAILED_DOWNLOAD_RATE)
    if count >= 5:
        n_failed = max(1, n_failed)
    return set(rng.sample(range(count), n_failed))


def download_rows(rng: random.Random, world: World, urls: list[str], make_caption) -> tuple[list[str], Callable]:
    """Captions for every URL (scenes sampled now) and a lazy generator of img2dataset rows (rendered later)."""
    failed = _failed_indices(rng, len(urls))
    planned = []
    for index, url in enumerate(urls):
        scene = sample_scene(rng, world.image_size)
        caption = make_caption(scene, rng)
        error = rng.choice(DOWNLOAD_ERRORS) if index in failed else None
        planned.append((scene, caption, url, error))

    def rows():
        for scene, caption, url, error in planned:
            if error is not None:
                yield DownloadRow(caption, url, None, error_message=error)
                continue
            image = render_scene(scene)
            world.progress.update(1)
            yield DownloadRow(caption, url, encode_jpeg(image), world.image_size, world.image_size)

    return [caption for _, caption, _, _ in planned], rows
