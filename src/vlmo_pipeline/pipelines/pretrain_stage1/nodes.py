"""Node of the `pretrain_stage1` pipeline: parameters → `RunConfig` → `train` (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node


def pretrain_stage1(
    vocab: Path, coco_arrow: Path, vg_arrow: Path, cc3m_arrow: Path, sbu_arrow: Path, params: dict[str, Any]
) -> tuple:
    """Stage 1: image-only masked image modeling (attention + V-FFN) from scratch or a BEiT checkpoint.

    Starts from the vocabulary directory; the Arrow dataset folders come from the catalog.
    Returns the model-directory writer
    (or, for several devices, the directory torchrun exported) and the training summary.
    """
    return train_node(
        params,
        "pretrain_stage1",
        vocab_dir=vocab,
        dataset_dirs={"coco": coco_arrow, "vg": vg_arrow, "cc3m": cc3m_arrow, "sbu": sbu_arrow},
    )
