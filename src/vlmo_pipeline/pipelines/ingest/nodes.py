"""Nodes of the ingest pipelines: turn parameters into an `IngestConfig` and call `ingest_dataset`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset


def _config(params: dict[str, Any], dataset: str) -> IngestConfig:
    """Shared ingest settings, with per-dataset overrides from ``params["overrides"][dataset]``."""
    settings = {k: v for k, v in params.items() if k != "overrides"}
    settings.update((params.get("overrides") or {}).get(dataset) or {})
    return IngestConfig(**settings)


def make_ingest_node(dataset: str):
    """Build the node function for one dataset: raw tree in, Arrow-directory writer out."""

    def ingest(raw_root: Path, params: dict[str, Any], image_root: Path | None = None):
        return partial(ingest_dataset, dataset, raw_root, config=_config(params, dataset), image_root=image_root)

    ingest.__name__ = f"ingest_{dataset}"
    ingest.__doc__ = f"Stream the raw {dataset} tree into sharded Arrow files (writer for a DirectoryDataset)."
    return ingest
