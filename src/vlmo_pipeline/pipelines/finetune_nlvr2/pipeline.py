"""Wiring of the `finetune_nlvr2` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.finetune_nlvr2.nodes import finetune_nlvr2


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                finetune_nlvr2,
                inputs=["pretrained_model", "nlvr2_arrow", "params:finetune_nlvr2"],
                outputs=["nlvr2_model", "nlvr2_training_summary"],
                name="finetune_nlvr2",
                tags=["training", "finetune_nlvr2"],
            )
        ]
    )
