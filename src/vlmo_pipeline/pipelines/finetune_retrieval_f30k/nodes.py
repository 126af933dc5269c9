"""Node of the `finetune_retrieval_f30k` pipeline: parameters → `RunConfig` → `train` (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node


def finetune_retrieval_f30k(init_model: Path, f30k_arrow: Path, params: dict[str, Any]) -> tuple:
    """Flickr30K retrieval fine-tuning (dual encoder, ITC loss).

    Starts from the `pretrained_model` directory; the Arrow dataset folders come from the catalog.
    Returns the model-directory writer
    (or, for several devices, the directory torchrun exported) and the training summary.
    """
    return train_node(params, "finetune_retrieval_f30k", init=init_model, dataset_dirs={"f30k": f30k_arrow})
