"""Pipelines `ingest` and `ingest_<dataset>`: raw trees → sharded Arrow datasets in data/03_primary."""

from vlmo_pipeline.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
