"""Pipeline `evaluate`: score every fine-tuned model on its test split; metrics.json, plots and report.md."""

from vlmo_pipeline.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
