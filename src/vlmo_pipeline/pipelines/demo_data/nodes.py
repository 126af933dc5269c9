"""Nodes of the `demo_data` pipeline: thin wrappers around `vlmo_pipeline.data.demo`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.demo import DEFAULT_N_IMAGES, generate_demo_world
from vlmo_pipeline.data.registry import DATASETS
from vlmo_pipeline.schema import build_config

# One catalog entry per raw tree (data/01_raw/<name>, names from data/registry.py), so Kedro-Viz shows which ingest
# node reads which tree. Each tree carries the generator's marker file, `.demo_world.json`: the raw_* catalog
# entries (`protect_unless`) replace a marked tree on re-generation but never a user's real dataset.


@dataclass(frozen=True)
class DemoDataParams:
    """The ``demo_data`` parameters section (conf/base/parameters_demo_data.yml), type-checked."""

    n_images: int = DEFAULT_N_IMAGES
    seed: int = 0
    image_size: int = 64
    show_progress: bool = True


def generate_world(staging_paths: dict[str, Path], params: dict[str, Any]) -> tuple:
    """Render the demo world into a scratch folder and hand each raw tree to its catalog entry.

    The generator writes all trees together (VQAv2 asks about the COCO images), into the catalog's
    ``demo_world_staging`` folder (on the same disk as ``data/01_raw``); each returned path is then *moved* into
    place by its ``DirectoryDataset``. Returns the eight tree paths in ``DATASETS`` order, then the summary.
    """
    settings = build_config(DemoDataParams, params, "parameters_demo_data.yml", "demo_data")
    staging = Path(staging_paths["staging_dir"])
    shutil.rmtree(staging, ignore_errors=True)
    summary = generate_demo_world(
        staging,
        n_images=settings.n_images,
        seed=settings.seed,
        image_size=settings.image_size,
        show_progress=settings.show_progress,
    )
    return (*(staging / name for name in DATASETS), summary)
