"""Pipeline `finetune_vqa`: vQAv2 fine-tuning (soft-score BCE over the ingest's answer vocabulary)."""

from vlmo_pipeline.pipelines.finetune_vqa.pipeline import create_pipeline

__all__ = ["create_pipeline"]
