"""The node of every training pipeline: catalog inputs → `train_node` (parameters + catalog paths → `RunConfig` →
training)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmo_pipeline.training.node import train_node
from vlmo_pipeline.training.runs import RunSpec


def make_train_node(run: RunSpec) -> Callable[..., tuple]:
    """The node function of ``run``: called with :attr:`RunSpec.inputs` (the starting model directory, or for stage
    1 the vocabulary directory; the Arrow dataset folders; the run's work folders; the parameters section), it
    returns the model-directory writer (or, for several devices, the directory torchrun exported) and the training
    summary."""

    def train(start: Path, *datasets_dirs_params: Any) -> tuple:
        *dataset_dirs, work_dirs, params = datasets_dirs_params
        dirs = dict(zip(run.datasets, dataset_dirs, strict=True))
        start_from = {"vocab_dir": start} if run.starts_from is None else {"init": start}
        return train_node(params, run.pipeline, work_dirs=work_dirs, dataset_dirs=dirs, **start_from)

    train.__name__ = train.__qualname__ = run.pipeline  # Kedro-Viz and the logs show the pipeline's name
    start = "the vocabulary" if run.starts_from is None else f"the `{run.starts_from}` directory"
    train.__doc__ = (
        f"{run.description}\n\nStarts from {start}; the Arrow datasets and work folders come from the catalog."
    )
    return train
