"""Reader of img2dataset output folders (how users download CC3M and SBU), both layouts.

One output folder holds shards named ``NNNNN`` (zero-padded). Per shard:

* ``NNNNN.parquet``: one row per input sample with at least ``key`` and ``status`` (``success``,
  ``failed_to_download``, ``failed_to_resize``) and ``error_message``;
* the samples, either as the *files* layout (folder ``NNNNN/`` with ``<key>.jpg``, ``<key>.txt``, ``<key>.json``)
  or the *webdataset* layout (``NNNNN.tar`` with the same member names);
* ``NNNNN_stats.json`` (not needed).

A sample becomes a caption row ``{image, caption: [<key>.txt], image_id: key, split}``. The caption comes from the
sample's ``.txt`` only (nothing is cross-checked against the annotation file). Tar members are not extracted: the
row points at the member's byte range inside the tar and the worker reads just those bytes.

Files-layout ``.txt`` captions are read with :func:`~vlmo_pipeline.data.raw.safe_io.read_regular_file` (regular
files of at most 1 MiB, symlinks confined to the output folder unless ``allow_outside_symlinks``); a caption file
that fails these checks makes its sample a reject with that reason.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from vlmo_pipeline.data.raw.records import (
    CORRUPT_IMAGE,
    DOWNLOAD_FAILED,
    MALFORMED_RECORD,
    MISSING_FILE,
    TOO_LARGE,
    ImageSource,
    RawItem,
    RawLayoutError,
    RawRecord,
    Reject,
    check_caption,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import DEFAULT_MAX_TEXT_BYTES, FileRejected, read_regular_file

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_SHARD_NAME = re.compile(r"^\d+$")


@dataclass
class _Sample:
    """What one shard holds for one key: image location and caption location/text."""

    image: ImageSource | None = None
    caption_text: str | None = None
    caption_error: str | None = None
    caption_reason: str = MALFORMED_RECORD


@dataclass(frozen=True)
class Img2DatasetShard:
    name: str
    parquet: Path | None
    tar: Path | None
    folder: Path | None


def find_shards(output_dir: Path) -> list[Img2DatasetShard]:
    """The shards of one img2dataset output folder, sorted by name."""
    names = set()
    for entry in output_dir.iterdir():
        stem = entry.name.split(".", 1)[0]
        if _SHARD_NAME.match(stem) and (
            entry.name in (f"{stem}.parquet", f"{stem}.tar") or (entry.is_dir() and entry.name == stem)
        ):
            names.add(stem)
    shards = []
    for name in sorted(names):
        parquet, tar, folder = output_dir / f"{name}.parquet", output_dir / f"{name}.tar", output_dir / name
        shards.append(
            Img2DatasetShard(
                name,
                parquet if parquet.is_file() else None,
                tar if tar.is_file() else None,
                folder if folder.is_dir() else None,
            )
        )
    return shards


def require_shards(output_dir: Path) -> list[Img2DatasetShard]:
    """The shards of ``output_dir``; RawLayoutError when the folder holds none."""
    shards = find_shards(output_dir) if output_dir.is_dir() else []
    if not shards:
        raise RawLayoutError(output_dir, "no img2dataset shards (NNNNN.parquet with NNNNN.tar or NNNNN/ folder)")
    return shards


def count_samples(output_dir: Path) -> int | None:
    """Number of samples the parquet files list (None if some shard has no parquet)."""
    total = 0
    for shard in find_shards(output_dir):
        if shard.parquet is None:
            return None
        total += pq.ParquetFile(shard.parquet).metadata.num_rows
    return total


def _read_statuses(parquet: Path) -> dict[str, tuple[int, str, str]]:
    """key → (row index, status, error message) from an img2dataset shard parquet."""
    try:
        table = pq.read_table(parquet)
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError for a broken file
        raise RawLayoutError(parquet, f"unreadable img2dataset status parquet ({error})") from error
    if "key" not in table.column_names or "status" not in table.column_names:
        raise RawLayoutError(parquet, f"expected img2dataset columns key, status; found {table.column_names}")
    keys = table.column("key").to_pylist()
    statuses = table.column("status").to_pylist()
    errors = table.column("error_message").to_pylist() if "error_message" in table.column_names else [None] * len(keys)
    return {
        str(key): (row, str(status), "" if error is None else str(error))
        for row, (key, status, error) in enumerate(zip(keys, statuses, errors))
        if key is not None
    }


def _split_member_name(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, extension = base.partition(".")
    return key, extension.lower()


def _read_tar_samples(tar_path: Path, root: Path) -> tuple[dict[str, _Sample], str | None]:
    """Index a webdataset tar: image byte ranges and caption texts per key. Returns (samples, read error)."""
    samples: dict[str, _Sample] = {}
    read_error = None
    try:
        with tarfile.open(tar_path, "r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, extension = _split_member_name(member.name)
                sample = samples.setdefault(key, _Sample())
                if extension in IMAGE_EXTENSIONS and sample.image is None:
                    sample.image = ImageSource(str(tar_path), member.offset_data, member.size, root=str(root))
                elif extension == "txt":
                    if member.size > DEFAULT_MAX_TEXT_BYTES:
                        sample.caption_error = f"caption member is {member.size} bytes > {DEFAULT_MAX_TEXT_BYTES}"
                        sample.caption_reason = TOO_LARGE
                        continue
                    handle = archive.extractfile(member)
                    raw = handle.read() if handle is not None else b""
                    try:
                        sample.caption_text = raw.decode("utf-8")
                    except UnicodeDecodeError as error:
                        sample.caption_error = f"caption is not UTF-8 ({error})"
    except (tarfile.ReadError, EOFError, OSError) as error:
        # A truncated or damaged tar: keep what was indexed; samples after the break show up as missing.
        read_error = f"tar ends early or is damaged: {error}"
    return samples, read_error


def _read_folder_samples(folder: Path, root: Path, allow_outside_symlinks: bool = False) -> dict[str, _Sample]:
    """Index a files-layout shard folder (image path and caption text per key)."""
    samples: dict[str, _Sample] = {}
    for entry in sorted(folder.iterdir()):
        key, extension = _split_member_name(entry.name)
        sample = samples.setdefault(key, _Sample())
        if extension in IMAGE_EXTENSIONS and sample.image is None:
            sample.image = ImageSource(str(entry), root=str(root))
        elif extension == "txt":
            try:
                raw = read_regular_file(
                    entry, limit=DEFAULT_MAX_TEXT_BYTES, root=root, allow_outside=allow_outside_symlinks
                )
            except FileRejected as rejected:
                sample.caption_error, sample.caption_reason = f"caption file: {rejected.detail}", rejected.reason
                continue
            try:
                sample.caption_text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                sample.caption_error = f"caption is not UTF-8 ({error})"
    return samples


def _key_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def iter_img2dataset(
    output_dir: str | Path, split: str, max_caption_chars: int, allow_outside_symlinks: bool = False
) -> Iterator[RawItem]:
    """Stream caption records (and rejects) from one img2dataset output folder, shard by shard, key order."""
    output_dir = Path(output_dir)
    for shard in require_shards(output_dir):
        statuses = _read_statuses(shard.parquet) if shard.parquet is not None else {}
        read_error = None
        if shard.tar is not None:
            samples, read_error = _read_tar_samples(shard.tar, output_dir)
            content = str(shard.tar)
        elif shard.folder is not None:
            samples = _read_folder_samples(shard.folder, output_dir, allow_outside_symlinks)
            content = str(shard.folder)
        else:
            samples, content = {}, str(output_dir / shard.name)
        for key in sorted(set(statuses) | set(samples), key=_key_order):
            yield from tag_split(
                _sample_item(
                    key, statuses.get(key), samples.get(key), shard, content, split, max_caption_chars, read_error
                ),
                split,
            )


def _sample_item(
    key: str,
    status: tuple[int, str, str] | None,
    sample: _Sample | None,
    shard: Img2DatasetShard,
    content: str,
    split: str,
    max_caption_chars: int,
    read_error: str | None,
) -> Iterator[RawItem]:
    if status is not None:
        row, state, message = status
        if state != "success":
            reason = CORRUPT_IMAGE if state == "failed_to_resize" else DOWNLOAD_FAILED
            yield Reject(key, f"{shard.parquet}:{row}", reason, f"img2dataset status {state}: {message}".strip())
            return
    damaged = f" ({read_error})" if read_error else ""
    if sample is None or sample.image is None:
        yield Reject(key, content, MISSING_FILE, f"no image for key {key} in {content}{damaged}")
        return
    if sample.caption_error is not None:
        yield Reject(key, content, sample.caption_reason, sample.caption_error)
        return
    if sample.caption_text is None:
        yield Reject(key, content, MISSING_FILE, f"no caption file {key}.txt in {content}{damaged}")
        return
    caption, reject = check_caption(sample.caption_text, key, content, max_caption_chars)
    if reject is not None:
        yield reject
        return
    yield RawRecord(
        record_id=key,
        split=split,
        source=content,
        fields={"caption": [caption], "image_id": key, "split": split},
        images={"image": sample.image},
    )
