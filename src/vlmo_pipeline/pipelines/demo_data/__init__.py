"""Pipeline `demo_data`: render the synthetic demo world into data/01_raw in the real datasets' formats."""

from vlmo_pipeline.pipelines.demo_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
