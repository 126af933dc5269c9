"""Node of the `pretrain_stage3` pipeline: parameters → `RunConfig` → `train` (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node


def pretrain_stage3(
    init_model: Path, coco_arrow: Path, vg_arrow: Path, cc3m_arrow: Path, sbu_arrow: Path, params: dict[str, Any]
) -> tuple:
    """Stage 3: image-text pretraining (ITC + ITM with hard negatives + 0.25 MLM).

    Starts from the `stage2_model` directory; the Arrow dataset folders come from the catalog.
    Returns the model-directory writer
    (or, for several devices, the directory torchrun exported) and the training summary.
    """
    return train_node(
        params,
        "pretrain_stage3",
        init=init_model,
        dataset_dirs={"coco": coco_arrow, "vg": vg_arrow, "cc3m": cc3m_arrow, "sbu": sbu_arrow},
    )
