"""Wiring of the `evaluate` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.evaluate.nodes import EVALUATED_DATASETS, EVALUATED_RUNS, TRAINED_RUNS, evaluate_models
from vlmo_pipeline.training.runs import get_run


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                evaluate_models,
                inputs=[
                    "params:evaluate",
                    *(run.model_output for run in EVALUATED_RUNS),  # stage 3's: held-out ITM, ITM re-ranking
                    *(f"{name}_arrow" for name in EVALUATED_DATASETS),
                    *(get_run(name).summary_output for name in TRAINED_RUNS),
                ],
                outputs=["metrics", "evaluation_report"],
                name="evaluate_models",
                tags=["evaluate"],
            )
        ]
    )
