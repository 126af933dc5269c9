"""Kedro pipeline registry: every pipeline the README and dvc.yaml name."""

from __future__ import annotations

from functools import partial

from kedro.pipeline import Pipeline

from vlmo_pipeline.data.registry import DATASETS
from vlmo_pipeline.pipelines import demo_data, evaluate, ingest, train, vocab
from vlmo_pipeline.pipelines.ingest.pipeline import create_dataset_pipeline
from vlmo_pipeline.training.runs import RUNS

#: The training chain in order: vocabulary → the runs of the registry (three pretraining stages, four fine-tunes)
#: → evaluation; pipeline name → its factory.
TRAINING_PIPELINES = {
    "vocab": vocab.create_pipeline,
    **{run.pipeline: partial(train.create_pipeline, run.name) for run in RUNS},
    "evaluate": evaluate.create_pipeline,
}


def register_pipelines() -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {
        "demo_data": demo_data.create_pipeline(),
        "ingest": ingest.create_pipeline(),
    }
    for name in DATASETS:
        pipelines[f"ingest_{name}"] = create_dataset_pipeline(name)
    for name, create_pipeline in TRAINING_PIPELINES.items():
        pipelines[name] = create_pipeline()
    pipelines["training"] = sum((pipelines[name] for name in TRAINING_PIPELINES), Pipeline([]))
    pipelines["__default__"] = pipelines["demo_data"] + pipelines["ingest"] + pipelines["training"]
    return pipelines
