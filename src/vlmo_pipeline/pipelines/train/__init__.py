"""The training pipelines (pretraining stages and fine-tunes): one per training run, built from the run registry
(:mod:`vlmo_pipeline.training.runs`)."""

from vlmo_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
