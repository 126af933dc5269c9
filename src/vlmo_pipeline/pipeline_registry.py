"""Kedro pipeline registry: every pipeline the README and dvc.yaml name."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from vlmo_pipeline.pipelines import (
    demo_data,
    evaluate,
    finetune_nlvr2,
    finetune_retrieval_coco,
    finetune_retrieval_f30k,
    finetune_vqa,
    ingest,
    pretrain_stage1,
    pretrain_stage2,
    pretrain_stage3,
    vocab,
)
from vlmo_pipeline.pipelines.demo_data.nodes import RAW_DATASETS
from vlmo_pipeline.pipelines.ingest.pipeline import create_dataset_pipeline

#: The training chain in order: vocabulary → three pretraining stages → four fine-tunes → evaluation.
TRAINING_PIPELINES = {
    "vocab": vocab,
    "pretrain_stage1": pretrain_stage1,
    "pretrain_stage2": pretrain_stage2,
    "pretrain_stage3": pretrain_stage3,
    "finetune_retrieval_coco": finetune_retrieval_coco,
    "finetune_retrieval_f30k": finetune_retrieval_f30k,
    "finetune_vqa": finetune_vqa,
    "finetune_nlvr2": finetune_nlvr2,
    "evaluate": evaluate,
}


def register_pipelines() -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {
        "demo_data": demo_data.create_pipeline(),
        "ingest": ingest.create_pipeline(),
    }
    for name in RAW_DATASETS:
        pipelines[f"ingest_{name}"] = create_dataset_pipeline(name)
    for name, package in TRAINING_PIPELINES.items():
        pipelines[name] = package.create_pipeline()
    pipelines["training"] = sum((pipelines[name] for name in TRAINING_PIPELINES), Pipeline([]))
    pipelines["__default__"] = pipelines["demo_data"] + pipelines["ingest"] + pipelines["training"]
    return pipelines
