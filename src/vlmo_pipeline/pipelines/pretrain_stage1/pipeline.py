"""Wiring of the `pretrain_stage1` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.pretrain_stage1.nodes import pretrain_stage1


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                pretrain_stage1,
                inputs=["vocab", "coco_arrow", "vg_arrow", "cc3m_arrow", "sbu_arrow", "params:pretrain_stage1"],
                outputs=["stage1_model", "stage1_training_summary"],
                name="pretrain_stage1",
                tags=["training", "pretrain_stage1"],
            )
        ]
    )
