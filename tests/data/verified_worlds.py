"""Tiny real datasets for the verification tests: ingested from a raw COCO tree, or written with ShardWriter."""

from __future__ import annotations

import json
from pathlib import Path

from vlmo_pipeline.data.arrow_io import (
    SCHEMA_VERSION,
    RejectLog,
    SplitWriters,
    schema_for,
    shard_infos_to_json,
    write_manifest,
)
from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees


def ingest_coco(root: Path, folder: str = "coco", n: int = 5, shard_rows: int = 2) -> Path:
    """Ingest a raw Karpathy COCO tree of ``n`` train images (captions 'a picture number <i>') into root/folder."""
    raw = root.parent / f"raw_{root.name}_{folder}"
    raw_trees.coco_tree(raw, [("train", "train2014", i + 1, [f"a picture number {i}"]) for i in range(n)])
    ingest_dataset("coco", raw, root / folder, IngestConfig(workers=0, shard_rows=shard_rows), show_progress=False)
    return root / folder


def write_dataset(out: Path, rows_by_split: dict[str, list[dict]], dataset: str = "coco", shard_rows: int = 4):
    """Write rows with the project's writer (no image checks: corrupt images stay) plus a manifest."""
    schema = schema_for(dataset)
    writers = SplitWriters(out, schema, shard_rows=shard_rows, batch_rows=2)
    for split, rows in rows_by_split.items():
        for row in rows:
            writers.write(split, row)
    shards = writers.close()
    RejectLog(out).close()
    write_manifest(
        out,
        {
            "schema_version": SCHEMA_VERSION,
            "dataset": dataset,
            "splits": {split: len(rows) for split, rows in rows_by_split.items()},
            "shards": shard_infos_to_json(shards),
            "rejects": 0,
        },
    )
    return out


def edit_manifest(dataset_dir: Path, edit) -> None:
    path = dataset_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
