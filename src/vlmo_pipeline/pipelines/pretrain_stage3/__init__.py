"""Pipeline `pretrain_stage3`: stage 3: image-text pretraining (ITC + ITM with hard negatives + 0.25 MLM)."""

from vlmo_pipeline.pipelines.pretrain_stage3.pipeline import create_pipeline

__all__ = ["create_pipeline"]
