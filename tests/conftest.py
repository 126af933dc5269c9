"""Shared fixtures: paths to the repository, the shared real-data samples, and a scratch Kedro project."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASAMPLES = SHARED / "datasamples"

# Nothing in the tests may reach the network.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def datasamples() -> Path:
    """The real dataset excerpts in ../shared/datasamples (skips when this checkout has no shared/ beside it)."""
    if not DATASAMPLES.is_dir():
        pytest.skip(f"real data samples not found at {DATASAMPLES}")
    return DATASAMPLES


@pytest.fixture(scope="session")
def bert_vocab(datasamples: Path) -> Path:
    return datasamples / "bert-base-uncased" / "vocab.txt"


@pytest.fixture
def kedro_project(tmp_path: Path) -> Path:
    """A copy of this Kedro project (config + metadata, empty data layers) in a temporary folder.

    The package itself is imported from the installed checkout; only conf/ and data/ are per-test, so runs never
    touch the repository's data folder.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", project / ".telemetry")
    (project / "src").mkdir()  # Kedro insists on a source dir; the package comes from the installed checkout
    shutil.copytree(REPO / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    for layer in (REPO / "data").iterdir():
        if layer.is_dir():
            (project / "data" / layer.name).mkdir(parents=True)
    return project
