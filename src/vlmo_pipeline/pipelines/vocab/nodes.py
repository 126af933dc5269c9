"""Node of the `vocab` pipeline: parameters → `VocabConfig` → `build_vocab` (as a DirectoryDataset writer)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any


def build_vocabulary(text_arrow: Path, coco_arrow: Path, vqav2_arrow: Path, nlvr2_arrow: Path, params: dict[str, Any]):
    """Copy `params["vocab_file"]` or train a vocabulary on `params["corpora"]`; returns a directory writer."""
    from vlmo_pipeline.training.vocab import VocabConfig, build_vocab  # deferred: see training.node

    config = VocabConfig.from_dict(params)
    dataset_dirs = {"text": text_arrow, "coco": coco_arrow, "vqav2": vqav2_arrow, "nlvr2": nlvr2_arrow}
    return partial(build_vocab, config, dataset_dirs)
