"""Wiring of the `pretrain_stage2` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.pretrain_stage2.nodes import pretrain_stage2


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                pretrain_stage2,
                inputs=["stage1_model", "text_arrow", "params:pretrain_stage2"],
                outputs=["stage2_model", "stage2_training_summary"],
                name="pretrain_stage2",
                tags=["training", "pretrain_stage2"],
            )
        ]
    )
