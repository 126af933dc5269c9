"""Nodes of the ingest pipelines: turn parameters into an `IngestConfig` and call `ingest_dataset`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
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


def make_ingest_node(dataset: str):
    """Build the node function for one dataset: raw tree in, Arrow-directory writer out."""

    def ingest(raw_root: Path, params: dict[str, Any], image_root: Path | None = None):
        return partial(ingest_dataset, dataset, raw_root, config=_config(params, dataset), image_root=image_root)

    ingest.__name__ = f"ingest_{dataset}"
    ingest.__doc__ = f"Stream the raw {dataset} tree into sharded Arrow files (writer for a DirectoryDataset)."
    return ingest
