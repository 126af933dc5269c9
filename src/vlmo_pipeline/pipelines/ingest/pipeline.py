"""Wiring of the ingest pipelines: one node per raw dataset."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.data.registry import DATASETS
from vlmo_pipeline.pipelines.ingest.nodes import make_ingest_node


def create_dataset_pipeline(dataset: str) -> Pipeline:
    """`ingest_<dataset>`: raw_<dataset> → <dataset>_arrow (VQAv2 also reads the COCO images)."""
    inputs = [f"raw_{dataset}", "params:ingest"]
    if dataset == "vqav2":
        inputs.append("raw_coco")
    return Pipeline(
        [
            node(
                make_ingest_node(dataset),
                inputs=inputs,
                outputs=f"{dataset}_arrow",
                name=f"ingest_{dataset}",
                tags=["ingest", f"ingest_{dataset}"],
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """`ingest`: every dataset."""
    return sum((create_dataset_pipeline(name) for name in DATASETS), Pipeline([]))
