"""Node of the `pretrain_stage2` pipeline: parameters → `RunConfig` → `train` (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node


def pretrain_stage2(init_model: Path, text_arrow: Path, params: dict[str, Any]) -> tuple:
    """Stage 2: text-only masked language modeling; attention and V-FFN frozen.

    Starts from the `stage1_model` directory; the Arrow dataset folders come from the catalog.
    Returns the model-directory writer
    (or, for several devices, the directory torchrun exported) and the training summary.
    """
    return train_node(params, "pretrain_stage2", init=init_model, dataset_dirs={"text": text_arrow})
