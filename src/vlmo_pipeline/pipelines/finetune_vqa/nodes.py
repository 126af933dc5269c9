"""Node of the `finetune_vqa` pipeline: parameters → `RunConfig` → `train` (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node


def finetune_vqa(init_model: Path, vqav2_arrow: Path, params: dict[str, Any]) -> tuple:
    """VQAv2 fine-tuning (soft-score BCE over the ingest's answer vocabulary).

    Starts from the `pretrained_model` directory; the Arrow dataset folders come from the catalog.
    Returns the model-directory writer
    (or, for several devices, the directory torchrun exported) and the training summary.
    """
    return train_node(params, "finetune_vqa", init=init_model, dataset_dirs={"vqav2": vqav2_arrow})
