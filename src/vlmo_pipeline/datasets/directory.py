"""A Kedro dataset for a whole directory written by library code.

Our large artefacts (raw dataset trees, sharded Arrow datasets, model checkpoints) are directories written by
streaming code, never Python objects held in memory. So the catalog entry owns the *path* and the node hands
back a *writer*: ``save(writer)`` calls ``writer(tmp_dir)`` on a sibling temporary directory and swaps it into
place with renames, so a killed run never leaves a half-written directory at the catalog path. ``load()``
returns the directory's ``Path`` for the next node.

``save`` also accepts a finished directory (a ``Path``), which is moved into place the same way. A writer may
redirect its output: when it has a ``target_for(path)`` method, the directory it returns is written (locked,
staged and swapped the same way) instead of ``path``, which stays untouched. A partitioned ingestion writes its
part this way, beside the dataset folder the catalog names (:mod:`vlmo_pipeline.data.partitions`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from vlmo_pipeline.files import lock_target, remove_stale_siblings, staging_dir, swap_directory

DirectoryWriter = Callable[[Path], Any]


class DirectoryDataset(AbstractDataset[Path, "DirectoryWriter | Path"]):
    """A directory at ``path``; saved atomically from a writer callable or a staged directory.

    Args:
        path: the directory this catalog entry names.
        required_file: a file that must exist inside for ``load`` to succeed (e.g. ``manifest.json``), so a
            missing or incomplete input is reported with the path and what was expected.
        protect_unless: if set, ``save`` refuses to replace an existing directory that does not contain this
            marker file. The demo-world generator marks its trees, so re-generating the demo never deletes a
            real dataset that a user placed at the same path.
        hint: appended to the "missing" error (e.g. which pipeline produces it).
    """

    def __init__(
        self,
        path: str,
        required_file: str | None = None,
        protect_unless: str | None = None,
        hint: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = Path(path)
        self._required_file = required_file
        self._protect_unless = protect_unless
        self._hint = hint
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "required_file": self._required_file}

    def _exists(self) -> bool:
        if not self._path.is_dir():
            return False
        return self._required_file is None or (self._path / self._required_file).exists()

    def load(self) -> Path:
        if not self._path.is_dir():
            raise DatasetError(self._missing_message(f"directory {self._path} does not exist"))
        if self._required_file and not (self._path / self._required_file).exists():
            raise DatasetError(
                self._missing_message(f"{self._path} has no {self._required_file} (incomplete or not produced yet)")
            )
        return self._path

    def save(self, data: DirectoryWriter | Path) -> None:
        target = self._path
        redirect = getattr(data, "target_for", None)
        if callable(redirect):
            target = Path(redirect(self._path))
        if target.exists() and self._protect_unless and not (target / self._protect_unless).exists():
            raise DatasetError(
                f"refusing to replace {target}: it has no {self._protect_unless} marker, so it was not written by "
                f"this pipeline (real data?). Move it away or point the catalog entry elsewhere."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (isinstance(data, (str, os.PathLike)) or callable(data)):
            raise DatasetError(
                f"DirectoryDataset({target}) can save a writer callable or a directory path, got {type(data)!r}"
            )
        # one writer per output folder: a second `kedro run` writing the same folder fails here, at once
        with lock_target(target):
            remove_stale_siblings(target)  # staging / retired folders of killed runs
            staging = staging_dir(target)
            if staging.exists():
                shutil.rmtree(staging)
            try:
                if isinstance(data, (str, os.PathLike)):
                    shutil.move(os.fspath(data), staging)
                else:
                    staging.mkdir()
                    data(staging)
                swap_directory(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

    def _missing_message(self, what: str) -> str:
        return f"{what}." + (f" {self._hint}" if self._hint else "")
