"""Partitioned ingestion: several machines, no shared scheduler, one merge (``vlmo merge-manifests``).

Partition ``i`` of ``N`` (``IngestConfig.num_partitions`` / ``partition``) runs the dataset's reader over the
*whole* input — the metadata pass is cheap, and dataset-wide facts such as the VQA answer vocabulary, the rest_val
carve or the CC3M annotation line counts must be the same in every partition — and keeps the items (records and
rejects) at positions ``i, i + N, i + 2N, ...`` of the reader's deterministic stream: every item lands in exactly
one partition, and only the kept records have their images read. It writes a complete mini-dataset, by default
the sibling folder ``<dataset>.part-<i>-of-<N>`` of the dataset folder (:func:`partition_dir`), whose manifest
records ``partition: {index, count, input_items, input_sha256}``: the position count and a sha256 over every
item of the whole stream (ids, splits, text fields, image paths relative to their dataset root, reject reasons),
so the merge can tell that all parts read the same input even where the raw tree sits at another path.

:func:`merge_partitions` checks that the N parts are there exactly once, complete (each verifies against its
manifest: sizes and rows, or sha256 with ``verify``), of the same dataset and input, and ingested with the same
settings apart from the partition, the raw paths and the execution settings (:data:`IGNORED_PARAMETERS`); then
it assembles the dataset folder in a staging sibling and swaps it into place: shards hard-linked (copied across
file systems) under one ``<split>-NNNNN.arrow`` sequence per split (part 0's shards first), reject logs
concatenated, artifacts taken from part 0 (checked equal), one manifest with summed counts and each shard's
sha256 / rows / bytes carried over (a rename does not change the bytes). Rows are therefore the same set as an
unpartitioned run's, in partition-major order; the part folders stay as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.arrow_io import (
    FAILURE_NAME,
    MANIFEST_NAME,
    REJECTS_NAME,
    SHARD_PATTERN,
    DatasetNotReadyError,
    ManifestError,
    load_manifest,
    shard_name,
    verify_dataset,
    write_manifest,
)
from vlmo_pipeline.data.raw.records import RawItem, Reject
from vlmo_pipeline.files import (
    TargetLockedError,
    fsync_directory,
    lock_target,
    remove_stale_siblings,
    staging_dir,
    swap_directory,
)

#: ``<dataset>.part-<index>-of-<count>``: the folder name of one partition (see :func:`partition_dir`).
PART_PATTERN = re.compile(r"^(?P<dataset>.+)\.part-(?P<index>\d+)-of-(?P<count>\d+)$")

#: Manifest ``parameters`` that may differ between the parts of one merge: the partition itself, where the raw
#: tree lives on each machine (the input fingerprint checks that it is the same input), and the execution
#: settings, which change how fast a machine ingests but never a row or a shard byte.
IGNORED_PARAMETERS = frozenset(
    {
        "partition",
        "raw_root",
        "image_root",
        "reader_options",
        "workers",
        "cluster",
        "retries",
        "worker_memory_limit",
        "chunk_size",
        "max_inflight_chunks",
    }
)
#: Reader ``info`` entries that are paths on the ingesting machine (not compared between parts).
PATH_INFO_KEYS = frozenset({"image_root"})


class PartitionError(ValueError):
    """Partitions that cannot be merged; the message is one line that starts with the folder concerned."""


def partition_dir(dataset_dir: str | os.PathLike, index: int, count: int) -> Path:
    """Where partition ``index`` of ``count`` of the dataset folder ``dataset_dir`` is written by default."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.with_name(f"{dataset_dir.name}.part-{index}-of-{count}")


def find_parts(dataset_dir: str | os.PathLike) -> list[Path]:
    """The ``<dataset>.part-<i>-of-<N>`` folders beside ``dataset_dir`` (any N), sorted by name."""
    dataset_dir = Path(dataset_dir)
    parent = dataset_dir.parent
    if not parent.is_dir():
        raise PartitionError(f"{parent}: no such folder (the dataset folder's parent, where its parts would be)")
    found = []
    for entry in parent.iterdir():
        match = PART_PATTERN.match(entry.name)
        if match and match["dataset"] == dataset_dir.name and entry.is_dir():
            found.append(entry)
    return sorted(found)


# --- the ingest side: which items a partition keeps ------------------------------------------------------------


def item_fingerprint(item: RawItem) -> bytes:
    """One canonical line per stream item: what it is, never where the raw tree sits on this machine."""
    if isinstance(item, Reject):
        key: list[Any] = ["reject", item.record, item.reason, item.split, item.partial]
    else:
        images = {
            column: [
                os.path.relpath(source.path, source.root) if source.root else source.path,
                source.offset,
                source.length,
            ]
            for column, source in sorted(item.images.items())
        }
        key = ["record", item.record_id, item.split, item.fields, images]
    return json.dumps(key, sort_keys=True, ensure_ascii=False, default=repr).encode("utf-8") + b"\n"


class PartitionSelector:
    """Keeps partition ``index`` of ``count``'s items of a reader's stream and fingerprints the whole stream."""

    def __init__(self, index: int, count: int):
        if count < 2 or not 0 <= index < count:
            raise ValueError(f"partition {index} of {count}: need count >= 2 and 0 <= index < count")
        self.index = index
        self.count = count
        self.items_seen = 0
        self.finished = False
        self._digest = hashlib.sha256()

    @property
    def label(self) -> str:
        return f"part {self.index} of {self.count}"

    def select(self, items: Iterable[RawItem]) -> Iterator[RawItem]:
        """Every item of ``items`` is read (and fingerprinted); only this partition's are yielded."""
        for position, item in enumerate(items):
            self._digest.update(item_fingerprint(item))
            self.items_seen += 1
            if position % self.count == self.index:
                yield item
        self.finished = True

    def share(self, total: int | None) -> int | None:
        """This partition's share of ``total`` records (for the progress bar and the small-input rule)."""
        return None if total is None else max(0, (total - self.index + self.count - 1) // self.count)

    def record(self) -> dict[str, Any]:
        """The manifest's ``partition`` entry (once the whole stream was read)."""
        if not self.finished:
            raise RuntimeError("the record stream was not read to its end")
        return {
            "index": self.index,
            "count": self.count,
            "input_items": self.items_seen,
            "input_sha256": self._digest.hexdigest(),
        }


# --- the merge --------------------------------------------------------------------------------------------------


@dataclass
class Part:
    """One checked partition folder and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def index(self) -> int:
        return self.manifest["partition"]["index"]

    @property
    def count(self) -> int:
        return self.manifest["partition"]["count"]


@dataclass
class MergeResult:
    """What :func:`merge_partitions` did: ``status`` is ``merged``, ``up to date`` or ``already merged``."""

    dataset_dir: Path
    status: str
    manifest: dict[str, Any]
    parts: int
    linked: int = 0
    copied: int = 0


def _read_part(path: Path, level: str) -> Part:
    """A partition folder whose files verify against its manifest, which must carry a valid ``partition``."""
    if not path.is_dir():
        raise PartitionError(f"{path}: no such partition folder")
    problems = verify_dataset(path, level=level)
    if problems:
        first = problems[0] if problems[0].startswith(str(path)) else f"{path}: {problems[0]}"
        more = f" (and {len(problems) - 1} more; see `vlmo verify {path}`)" if len(problems) > 1 else ""
        raise PartitionError(f"{first}{more}")
    manifest = load_manifest(path)
    record = manifest.get("partition")
    fields = ("index", "count", "input_items", "input_sha256")
    if not isinstance(record, dict):
        raise PartitionError(
            f"{path}: not a partition (its manifest has no 'partition' entry; ingest with ingest.num_partitions > 1)"
        )
    if not all(isinstance(record.get(k), str if k == "input_sha256" else int) for k in fields):
        raise PartitionError(f"{path}: manifest 'partition' entry needs {', '.join(fields)}; got {record!r}")
    index, count = record["index"], record["count"]
    if count < 2 or not 0 <= index < count:
        raise PartitionError(f"{path}: manifest says partition {index} of {count}, which does not exist")
    parameters = manifest.get("parameters")
    said = (parameters.get("partition"), parameters.get("num_partitions")) if isinstance(parameters, dict) else None
    if said != (index, count):
        raise PartitionError(f"{path}: manifest 'parameters' do not say partition {index} of {count}")
    named = PART_PATTERN.match(path.name)
    if named and (int(named["index"]), int(named["count"])) != (index, count):
        raise PartitionError(
            f"{path}: the folder name says part {named['index']} of {named['count']}, its manifest part {index} "
            f"of {count} (renamed by hand?)"
        )
    return Part(path, manifest)


def _differences(mine: dict[str, Any], theirs: dict[str, Any], ignored: frozenset[str]) -> list[str]:
    keys = sorted((set(mine) | set(theirs)) - ignored)
    unset = "<unset>"
    return [
        f"{key}={mine.get(key, unset)!r} here, {theirs.get(key, unset)!r} there"
        for key in keys
        if mine.get(key, unset) != theirs.get(key, unset)
    ]


def _check_parts(dataset_dir: Path, parts: list[Part]) -> list[Part]:
    """The parts sorted by index, once each checked to be all N parts of one ingestion."""
    first = parts[0]
    for part in parts[1:]:
        if part.count != first.count:
            raise PartitionError(
                f"{part.path}: part {part.index} of {part.count} partitions, but {first.path} is part {first.index} "
                f"of {first.count}: give the parts of one partitioned ingestion"
            )
    by_index: dict[int, Part] = {}
    for part in parts:
        if part.index in by_index:
            raise PartitionError(
                f"{part.path}: duplicate of part {part.index} of {part.count} (already given as "
                f"{by_index[part.index].path})"
            )
        by_index[part.index] = part
    missing = [index for index in range(first.count) if index not in by_index]
    if missing:
        names = ", ".join(str(partition_dir(dataset_dir, index, first.count)) for index in missing)
        raise PartitionError(
            f"{dataset_dir}: {len(missing)} of {first.count} parts missing: {names} (found parts {sorted(by_index)})"
        )
    ordered = [by_index[index] for index in range(first.count)]
    reference = ordered[0]
    ref = reference.manifest
    for part in ordered[1:]:
        mine = part.manifest
        there = f"part 0 ({reference.path})"
        if mine.get("dataset") != ref.get("dataset"):
            raise PartitionError(f"{part.path}: a {mine.get('dataset')} part, but {there} is {ref.get('dataset')}")
        for key in ("schema_version", "columns", "artifacts"):
            if mine.get(key) != ref.get(key):
                raise PartitionError(f"{part.path}: manifest {key} {mine.get(key)!r} differs from {there}'s")
        settings = _differences(mine["parameters"], ref["parameters"], IGNORED_PARAMETERS)
        if settings:
            raise PartitionError(f"{part.path}: ingested with other settings than {there}: {'; '.join(settings[:3])}")
        mine_input = (mine["partition"]["input_items"], mine["partition"]["input_sha256"])
        ref_input = (ref["partition"]["input_items"], ref["partition"]["input_sha256"])
        if mine_input != ref_input:
            raise PartitionError(
                f"{part.path}: read another input than {there}: {mine_input[0]} items, sha256 {mine_input[1][:12]}… "
                f"here, {ref_input[0]} items, {ref_input[1][:12]}… there (the raw trees or reader options differ)"
            )
        info = _differences(mine.get("info") or {}, ref.get("info") or {}, PATH_INFO_KEYS)
        if info:
            raise PartitionError(f"{part.path}: reader info differs from {there}: {'; '.join(info[:3])}")
        for artifact in ref.get("artifacts") or []:
            for holder in (reference, part):
                if not (holder.path / artifact).is_file():
                    raise PartitionError(f"{holder.path / artifact}: missing (the manifest lists it as an artifact)")
            if (part.path / artifact).read_bytes() != (reference.path / artifact).read_bytes():
                raise PartitionError(f"{part.path / artifact}: differs from {there}'s {artifact}")
    return ordered


def _plan(parts: list[Part]) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """The merged manifest (without ``created``) and the (part shard, merged file name) pairs to link."""
    ref = parts[0].manifest
    split_order = list(ref["splits"])
    split_order += sorted({split for part in parts for split in part.manifest["splits"]} - set(split_order))
    splits = {split: sum(part.manifest["splits"].get(split, 0) for part in parts) for split in split_order}
    links: list[tuple[Path, str]] = []
    shards: list[dict[str, Any]] = []
    renamed: dict[int, dict[str, str]] = {part.index: {} for part in parts}
    for split in sorted(splits):
        merged_count = 0
        for part in parts:
            entries = [entry for entry in part.manifest["shards"] if entry["split"] == split]
            for entry in sorted(entries, key=lambda entry: int(SHARD_PATTERN.match(entry["file"])["index"])):
                name = shard_name(split, merged_count)
                merged_count += 1
                links.append((part.path / entry["file"], name))
                shards.append({**entry, "file": name})
                renamed[part.index][entry["file"]] = name
    by_reason: Counter[str] = Counter()
    for part in parts:
        by_reason.update(part.manifest.get("rejects_by_reason") or {})
    manifest = {
        "schema_version": ref["schema_version"],
        "dataset": ref["dataset"],
        "splits": splits,
        "shards": shards,
        "rejects": sum(part.manifest.get("rejects", 0) for part in parts),
        "rejects_by_reason": dict(sorted(by_reason.items())),
        "sources": ref.get("sources", []),
        "parameters": {key: value for key, value in ref["parameters"].items() if key != "partition"},
        "columns": ref.get("columns"),
        "artifacts": ref.get("artifacts", []),
        "info": ref.get("info", {}),
        "partitions": {
            "count": len(parts),
            "input_items": ref["partition"]["input_items"],
            "input_sha256": ref["partition"]["input_sha256"],
            "parts": [
                {
                    "index": part.index,
                    "dir": str(part.path),
                    "created": part.manifest.get("created"),
                    "splits": part.manifest["splits"],
                    "rejects": part.manifest.get("rejects", 0),
                    "shards": renamed[part.index],
                }
                for part in parts
            ],
        },
    }
    return manifest, links


def _existing_manifest(dataset_dir: Path) -> dict[str, Any] | None:
    try:
        return load_manifest(dataset_dir)
    except (DatasetNotReadyError, ManifestError):
        return None


def _check_replaceable(dataset_dir: Path, dataset: str) -> None:
    """Refuse to replace a file, a folder holding another dataset, or a folder that is no dataset at all."""
    if not dataset_dir.exists():
        return
    if not dataset_dir.is_dir():
        raise PartitionError(f"{dataset_dir}: not a directory; refusing to replace it with the merged dataset")
    existing = _existing_manifest(dataset_dir)
    if existing is not None and existing.get("dataset") != dataset:
        raise PartitionError(
            f"{dataset_dir}: holds a {existing.get('dataset')} dataset, the parts are {dataset}; refusing to replace it"
        )
    entries = [entry.name for entry in dataset_dir.iterdir()]
    known = {MANIFEST_NAME, FAILURE_NAME, REJECTS_NAME}
    if entries and existing is None and not any(name in known or SHARD_PATTERN.match(name) for name in entries):
        raise PartitionError(
            f"{dataset_dir}: not a dataset folder (no {MANIFEST_NAME}, no shards); refusing to replace it"
        )


def _link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link ``source`` as ``target`` (True), or copy it where the file system cannot link (False)."""
    try:
        os.link(source, target)
        return True
    except OSError:  # another file system (EXDEV), or one without hard links
        shutil.copyfile(source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        return False


def _write_rejects(parts: list[Part], target: Path) -> None:
    """Concatenate the parts' reject logs (in part order) into ``target``."""
    with open(target, "wb") as out:
        for part in parts:
            with open(part.path / REJECTS_NAME, "rb") as handle:
                data = handle.read()
            out.write(data if not data or data.endswith(b"\n") else data + b"\n")
        out.flush()
        os.fsync(out.fileno())


def _lock_parts(stack: contextlib.ExitStack, paths: list[Path]) -> None:
    for path in paths:
        try:
            stack.enter_context(lock_target(path))
        except TargetLockedError as error:
            raise PartitionError(f"{path}: is being (re-)ingested right now ({error}); merge when it is done") from None
        except OSError:  # a read-only location: nothing can be rewriting the part there
            continue


def merge_partitions(
    dataset_dir: str | os.PathLike, part_dirs: Iterable[str | os.PathLike] | None = None, verify: bool = False
) -> MergeResult:
    """Assemble ``dataset_dir`` from its partitions (default: every ``<dataset_dir>.part-*-of-*`` sibling).

    Raises :class:`PartitionError` (one line naming the folder) when parts are missing, duplicated, incomplete,
    of other ingestions or settings, and :class:`~vlmo_pipeline.files.TargetLockedError` while another process
    writes ``dataset_dir``. ``verify``: re-hash every part's shards (sha256) instead of checking sizes and rows.
    Nothing is written when the dataset already holds exactly this merge (``status="up to date"``); a merge
    killed midway leaves the previous ``dataset_dir`` (its staging folder is removed by the next run).
    """
    dataset_dir = Path(dataset_dir)
    level = "sha256" if verify else "size"
    explicit = part_dirs is not None
    paths = [Path(path) for path in part_dirs] if explicit else find_parts(dataset_dir)
    if not paths:
        existing = _existing_manifest(dataset_dir)
        if existing is not None and isinstance(existing.get("partitions"), dict):
            count = existing["partitions"].get("count")
            return MergeResult(dataset_dir, "already merged", existing, count if isinstance(count, int) else 0)
        raise PartitionError(
            f"{dataset_dir}: no partition folders {dataset_dir.name}.part-<i>-of-<N> beside it; ingest with "
            "ingest.num_partitions=N, ingest.partition=i first (or name the part folders)"
        )
    if not explicit and len({PART_PATTERN.match(path.name)["count"] for path in paths}) > 1:
        found = ", ".join(path.name for path in paths)
        raise PartitionError(
            f"{dataset_dir}: part folders of different partition counts beside it ({found}); remove the stale ones "
            "or name the part folders to merge"
        )
    for path in paths:
        if not path.is_dir():
            raise PartitionError(f"{path}: no such partition folder")
        if path.resolve() == dataset_dir.resolve():
            raise PartitionError(f"{path}: is the dataset folder itself, not one of its parts")
    with contextlib.ExitStack() as stack:
        stack.enter_context(lock_target(dataset_dir))
        _lock_parts(stack, paths)
        parts = _check_parts(dataset_dir, [_read_part(path, level) for path in paths])
        manifest, links = _plan(parts)
        _check_replaceable(dataset_dir, manifest["dataset"])
        existing = _existing_manifest(dataset_dir)
        if existing is not None and {k: v for k, v in existing.items() if k != "created"} == manifest:
            if not verify_dataset(dataset_dir, level=level):
                return MergeResult(dataset_dir, "up to date", existing, len(parts))
        remove_stale_siblings(dataset_dir)
        staging = staging_dir(dataset_dir)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            linked = sum(_link_or_copy(source, staging / name) for source, name in links)
            _write_rejects(parts, staging / REJECTS_NAME)
            for artifact in manifest["artifacts"]:
                shutil.copyfile(parts[0].path / artifact, staging / artifact)
            created = datetime.now(UTC).isoformat(timespec="seconds")
            head = {"schema_version": manifest["schema_version"], "dataset": manifest["dataset"], "created": created}
            manifest = {**head, **manifest}  # `created` where an ingest run writes it
            write_manifest(staging, manifest)
            fsync_directory(staging)
            problems = verify_dataset(staging, level="size")
            if problems:
                raise PartitionError(f"{dataset_dir}: the assembled dataset does not verify: {problems[0]}")
            swap_directory(staging, dataset_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return MergeResult(dataset_dir, "merged", manifest, len(parts), linked, len(links) - linked)
