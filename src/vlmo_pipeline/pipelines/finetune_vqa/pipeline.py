"""Wiring of the `finetune_vqa` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.finetune_vqa.nodes import finetune_vqa


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                finetune_vqa,
                inputs=["pretrained_model", "vqav2_arrow", "params:finetune_vqa"],
                outputs=["vqa_model", "vqa_training_summary"],
                name="finetune_vqa",
                tags=["training", "finetune_vqa"],
            )
        ]
    )
