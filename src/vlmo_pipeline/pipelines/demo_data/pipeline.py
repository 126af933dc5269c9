"""Wiring of the `demo_data` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.data.registry import DATASETS
from vlmo_pipeline.pipelines.demo_data.nodes import generate_world


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                generate_world,
                inputs=["demo_world_staging", "params:demo_data"],
                outputs=[*(f"raw_{name}" for name in DATASETS), "demo_world_summary"],
                name="generate_demo_world",
                tags=["demo_data"],
            )
        ]
    )
