"""Wiring of the `finetune_retrieval_coco` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.finetune_retrieval_coco.nodes import finetune_retrieval_coco


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                finetune_retrieval_coco,
                inputs=["pretrained_model", "coco_arrow", "params:finetune_retrieval_coco"],
                outputs=["retrieval_coco_model", "retrieval_coco_training_summary"],
                name="finetune_retrieval_coco",
                tags=["training", "finetune_retrieval_coco"],
            )
        ]
    )
