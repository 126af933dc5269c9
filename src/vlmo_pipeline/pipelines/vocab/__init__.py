"""Pipeline `vocab`: the WordPiece vocabulary (BERT's vocab.txt, or one trained on the demo world's text)."""

from vlmo_pipeline.pipelines.vocab.pipeline import create_pipeline

__all__ = ["create_pipeline"]
