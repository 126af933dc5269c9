"""Node of the `finetune_nlvr2` pipeline: parameters → `RunConfig` → `train` (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node


def finetune_nlvr2(init_model: Path, nlvr2_arrow: Path, params: dict[str, Any]) -> tuple:
    """NLVR2 fine-tuning (two fused passes, concatenated poolers).

    Starts from the `pretrained_model` directory; the Arrow dataset folders come from the catalog.
    Returns the model-directory writer
    (or, for several devices, the directory torchrun exported) and the training summary.
    """
    return train_node(params, "finetune_nlvr2", init=init_model, dataset_dirs={"nlvr2": nlvr2_arrow})
