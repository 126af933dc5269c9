"""Wiring of the `pretrain_stage3` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.pretrain_stage3.nodes import pretrain_stage3


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                pretrain_stage3,
                inputs=["stage2_model", "coco_arrow", "vg_arrow", "cc3m_arrow", "sbu_arrow", "params:pretrain_stage3"],
                outputs=["pretrained_model", "stage3_training_summary"],
                name="pretrain_stage3",
                tags=["training", "pretrain_stage3"],
            )
        ]
    )
