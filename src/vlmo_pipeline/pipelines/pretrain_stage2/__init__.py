"""Pipeline `pretrain_stage2`: stage 2: text-only masked language modeling; attention and V-FFN frozen."""

from vlmo_pipeline.pipelines.pretrain_stage2.pipeline import create_pipeline

__all__ = ["create_pipeline"]
