"""Pipeline `finetune_nlvr2`: nLVR2 fine-tuning (two fused passes, concatenated poolers)."""

from vlmo_pipeline.pipelines.finetune_nlvr2.pipeline import create_pipeline

__all__ = ["create_pipeline"]
