"""A Kedro dataset that only names folders: how a node learns where to work without a path in the parameters.

A training node writes its model directory through the catalog (a ``DirectoryDataset`` output), but it also needs
to know *where* that directory is while it trains: Lightning's ``last.ckpt`` lives in ``<model_dir>/lightning`` so
that a re-run resumes it, and the CSV log, ``hparams.yaml`` and the trainable-parameter tables go to ``log_dir``.
Kedro does not tell a node the paths of its outputs, so each run gets one of these read-only entries as an input
(``<run>_work_dirs``), and so does the demo generator for its scratch folder; the parameter files hold no paths.
``tests/training/test_runs.py`` checks that a run's ``model_dir`` is the path of its model entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class PathsDataset(AbstractDataset[dict[str, Path], None]):
    """``load()`` → ``{name: Path}`` of the configured ``paths``; nothing is read or created. Not savable."""

    def __init__(self, paths: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
        if not paths or not all(isinstance(value, str) and value for value in paths.values()):
            raise DatasetError(f"{type(self).__name__}: `paths` must map names to non-empty paths, got {paths!r}")
        self._paths = {name: Path(value) for name, value in paths.items()}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"paths": {name: str(path) for name, path in self._paths.items()}}

    def load(self) -> dict[str, Path]:
        return dict(self._paths)

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} only names folders ({self._describe()}); it cannot be saved")

    def _exists(self) -> bool:
        return True  # the folders are the node's to create; as an input the entry is always available
