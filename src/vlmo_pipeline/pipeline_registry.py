"""Kedro pipeline registry: every pipeline the README and dvc.yaml name."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from vlmo_pipeline.pipelines import demo_data, ingest
from vlmo_pipeline.pipelines.demo_data.nodes import RAW_DATASETS
from vlmo_pipeline.pipelines.ingest.pipeline import create_dataset_pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {
        "demo_data": demo_data.create_pipeline(),
        "ingest": ingest.create_pipeline(),
    }
    for name in RAW_DATASETS:
        pipelines[f"ingest_{name}"] = create_dataset_pipeline(name)
    pipelines["__default__"] = pipelines["demo_data"] + pipelines["ingest"]
    return pipelines
