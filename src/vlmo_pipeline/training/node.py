"""What the Kedro training nodes call: parameters → `RunConfig` → training, with the heavy imports deferred.

Kedro imports every pipeline's node module to register the pipelines, so a module-level import of the training
stack (torch, torchvision, Lightning: about 6 s on a 2-core CPU) would be paid by every `kedro run`, the data
pipelines included, and by Kedro-Viz. This module imports nothing heavy; the stack loads when a node runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def train_node(
    params: Mapping[str, Any],
    section: str,
    init: str | os.PathLike | None = None,
    vocab_dir: str | os.PathLike | None = None,
    dataset_dirs: Mapping[str, str | os.PathLike] | None = None,
    work_dirs: Mapping[str, str | os.PathLike] | None = None,
) -> tuple:
    """`configure_run` + `train_for_catalog` (see :mod:`vlmo_pipeline.training.launch`): returns the model-directory
    writer (or, for several devices, the directory torchrun exported) and the training summary. ``vocab_dir``: a
    directory holding the vocabulary file (the `vocab` pipeline's output). ``work_dirs``: the catalog's
    ``model_dir`` and ``log_dir`` of the run. ``section``: the parameters section (the run's pipeline name), which
    lives in ``conf/<env>/parameters_<section>.yml``; errors name both."""
    from vlmo_pipeline.models.pretrained import VOCAB_NAME
    from vlmo_pipeline.training.launch import configure_run, train_for_catalog

    vocab_file = None if vocab_dir is None else Path(vocab_dir) / VOCAB_NAME
    where = f"parameters_{section}.yml"
    config = configure_run(
        params, where, path=section, init=init, vocab_file=vocab_file, dataset_dirs=dataset_dirs, work_dirs=work_dirs
    )
    return train_for_catalog(config)
