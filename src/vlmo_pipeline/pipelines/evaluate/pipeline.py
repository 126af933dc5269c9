"""Wiring of the `evaluate` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.evaluate.nodes import TRAINED_RUNS, evaluate_models
from vlmo_pipeline.training.runs import get_run


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                evaluate_models,
                inputs=[
                    "retrieval_coco_model",
                    "retrieval_f30k_model",
                    "vqa_model",
                    "nlvr2_model",
                    "pretrained_model",  # stage 3: held-out ITM and the ITM re-ranking of retrieval
                    "coco_arrow",
                    "f30k_arrow",
                    "vqav2_arrow",
                    "nlvr2_arrow",
                    "params:evaluate",
                    *(get_run(name).summary_output for name in TRAINED_RUNS),
                ],
                outputs=["metrics", "evaluation_report"],
                name="evaluate_models",
                tags=["evaluate"],
            )
        ]
    )
