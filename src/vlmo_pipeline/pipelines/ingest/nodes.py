"""Nodes of the ingest pipelines: turn parameters into an `IngestConfig` and call `ingest_dataset`.

With ``ingest.num_partitions`` > 1 the node's writer redirects the `DirectoryDataset` save to the partition's own
folder beside the catalog path (``data/03_primary/coco.part-1-of-4``): the dataset folder itself stays untouched
until ``vlmo merge-manifests`` assembles it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.data.partitions import partition_dir
from vlmo_pipeline.schema import ConfigError, build_config, check_fields


def _config(params: dict[str, Any], dataset: str) -> IngestConfig:
    """Shared ingest settings, with per-dataset overrides from ``params["overrides"][dataset]``, type-checked."""
    where = "parameters_ingest.yml"
    overrides = params.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: ingest.overrides: expected a mapping of dataset names to settings")
    # Check the shared settings and the dataset's overrides under their own keys, so an error names the right one.
    shared = check_fields(IngestConfig, {k: v for k, v in params.items() if k != "overrides"}, where, "ingest")
    own = check_fields(IngestConfig, overrides.get(dataset) or {}, where, f"ingest.overrides.{dataset}")
    return build_config(IngestConfig, {**shared, **own}, where, "ingest")


@dataclass(frozen=True)
class PartitionWriter:
    """The writer of one partition: ingests like the plain writer, into the partition's folder (``target_for``)."""

    write: Callable[[Path], Any]
    index: int
    count: int

    def __call__(self, out_dir: Path) -> Any:
        return self.write(out_dir)

    def target_for(self, dataset_dir: Path) -> Path:
        return partition_dir(dataset_dir, self.index, self.count)


def make_ingest_node(dataset: str):
    """Build the node function for one dataset: raw tree in, Arrow-directory writer out."""

    def ingest(raw_root: Path, params: dict[str, Any], image_root: Path | None = None):
        config = _config(params, dataset)
        writer = partial(ingest_dataset, dataset, raw_root, config=config, image_root=image_root)
        if config.num_partitions > 1:
            return PartitionWriter(writer, config.partition, config.num_partitions)
        return writer

    ingest.__name__ = f"ingest_{dataset}"
    ingest.__doc__ = f"Stream the raw {dataset} tree into sharded Arrow files (writer for a DirectoryDataset)."
    return ingest
