"""Wiring of the training pipelines: one node per run of the registry, named after its pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.train.nodes import make_train_node
from vlmo_pipeline.training.runs import get_run


def create_pipeline(run_name: str, **kwargs) -> Pipeline:
    """The pipeline of one run (its pipeline name or run name): its inputs and outputs from the registry."""
    run = get_run(run_name)
    return Pipeline(
        [
            node(
                make_train_node(run),
                inputs=run.inputs,
                outputs=[run.model_output, run.summary_output],
                name=run.pipeline,
                tags=["training", run.pipeline],
            )
        ]
    )
