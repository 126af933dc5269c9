"""Pipeline `finetune_retrieval_coco`: cOCO retrieval fine-tuning (dual encoder, ITC loss)."""

from vlmo_pipeline.pipelines.finetune_retrieval_coco.pipeline import create_pipeline

__all__ = ["create_pipeline"]
