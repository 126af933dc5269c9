"""Pipeline `finetune_retrieval_f30k`: flickr30K retrieval fine-tuning (dual encoder, ITC loss)."""

from vlmo_pipeline.pipelines.finetune_retrieval_f30k.pipeline import create_pipeline

__all__ = ["create_pipeline"]
