"""DVC reproduces the Kedro pipelines: a second `dvc repro` is a no-op, a parameter change re-runs exactly the
stages downstream of it, and `dvc push` / `dvc pull` restore outputs byte for byte in a fresh clone.

Each test works on a scratch git clone of this repository's tracked files with a tiny demo world.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

TINY_WORLD_PARAMS = {"n_images": 8, "show_progress": False}


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        DVC_NO_ANALYTICS="1",
    )


def _sh(cwd: Path, *args: str, timeout: int = 600) -> str:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _set_params(repo: Path, file: str, section: str, values: dict) -> None:
    path = repo / "conf" / "base" / file
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A git repository holding this project's tracked files, its DVC remote in a sibling folder."""
    repo = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    _set_params(repo, "parameters_demo_data.yml", "demo_data", TINY_WORLD_PARAMS)
    _sh(repo, "git", "init", "-q")
    _sh(repo, "git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _sh(repo, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    _sh(repo, "dvc", "remote", "add", "--local", "-f", "-d", "scratch", str(tmp_path / "remote"))
    return repo


def _stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def test_second_repro_is_a_noop_and_status_is_clean(dvc_repo: Path):
    first = _sh(dvc_repo, "dvc", "repro", "ingest_nlvr2")
    assert _stages_run(first) == ["demo_data", "ingest_nlvr2"]
    assert (dvc_repo / "data" / "03_primary" / "nlvr2" / "manifest.json").exists()

    second = _sh(dvc_repo, "dvc", "repro", "ingest_nlvr2")
    assert _stages_run(second) == []
    assert "didn't change, skipping" in second
    assert "up to date" in _sh(dvc_repo, "dvc", "status", "ingest_nlvr2")


def test_parameter_change_reruns_only_downstream_stages(dvc_repo: Path):
    _sh(dvc_repo, "dvc", "repro", "ingest_nlvr2")
    _set_params(dvc_repo, "parameters_ingest.yml", "ingest", {"shard_rows": 7})
    status = _sh(dvc_repo, "dvc", "status", "ingest_nlvr2")
    assert "ingest_nlvr2" in status and "demo_data" not in status

    rerun = _sh(dvc_repo, "dvc", "repro", "ingest_nlvr2")
    assert _stages_run(rerun) == ["ingest_nlvr2"]


def test_push_then_pull_into_a_fresh_clone_restores_outputs(dvc_repo: Path, tmp_path: Path):
    _sh(dvc_repo, "dvc", "repro", "ingest_nlvr2")
    _sh(dvc_repo, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "repro")
    _sh(dvc_repo, "dvc", "push")

    clone = tmp_path / "clone"
    _sh(tmp_path, "git", "clone", "-q", str(dvc_repo), str(clone))
    _sh(clone, "dvc", "remote", "add", "--local", "-f", "-d", "scratch", str(tmp_path / "remote"))
    _sh(clone, "dvc", "pull", "--with-deps", "ingest_nlvr2")

    original = dvc_repo / "data" / "03_primary" / "nlvr2"
    restored = clone / "data" / "03_primary" / "nlvr2"
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    assert files, "nothing was produced"
    for name in files:
        assert (restored / name).read_bytes() == (original / name).read_bytes(), name
    assert "up to date" in _sh(clone, "dvc", "status", "ingest_nlvr2")
