"""Wiring of the `finetune_retrieval_f30k` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.finetune_retrieval_f30k.nodes import finetune_retrieval_f30k


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                finetune_retrieval_f30k,
                inputs=["pretrained_model", "f30k_arrow", "params:finetune_retrieval_f30k"],
                outputs=["retrieval_f30k_model", "retrieval_f30k_training_summary"],
                name="finetune_retrieval_f30k",
                tags=["training", "finetune_retrieval_f30k"],
            )
        ]
    )
