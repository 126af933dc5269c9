"""Pipeline `pretrain_stage1`: stage 1: image-only masked image modeling (attention + V-FFN).

From scratch or from a BEiT checkpoint.
"""

from vlmo_pipeline.pipelines.pretrain_stage1.pipeline import create_pipeline

__all__ = ["create_pipeline"]
