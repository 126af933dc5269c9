"""`make metrics`: real DVC reads a metrics file in a scratch repository; the view groups it into per-task tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlmo_pipeline.tools.metrics_view import main

METRICS = {
    "retrieval": {"coco": {"tr_r1": 63.0, "ir_r1": 60.4}},
    "vqa": {"score": 58.1, "score_shuffled_images": 40.6, "by_family": {"colour": 55.3}},
    "nlvr2": {"dev_acc": 77.7},
    "chance": {"vqa": {"score": 18.1, "by_family": {"colour": 11.5}}, "nlvr2": {"dev_acc": 50.0}},
    "timing": {"total_s": 14.5},
    "model": {"stages": {"stage1": {"global_step": 40, "last_loss": 0.07}, "vqa": {"global_step": 500}}},
}


def _git_dvc(repo: Path, *args: str) -> None:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def metrics_repo(tmp_path: Path, monkeypatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git_dvc(repo, "git", "init", "-q")
    _git_dvc(repo, sys.executable, "-m", "dvc", "init", "-q")
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics.json\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return repo


def test_one_table_per_task_with_chance_beside(metrics_repo: Path, capsys) -> None:
    (metrics_repo / "metrics.json").write_text(json.dumps(METRICS))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "### VQA score %" in out and "### VQA score by question family %" in out and "### NLVR2" in out
    assert "| score | 58.1 | 18.1 |" in out and "| colour | 55.3 | 11.5 |" in out
    assert "| score_shuffled_images | 40.6 | - |" in out
    assert "timing" not in out.lower() and "Training stages" not in out  # only with --all
    assert max(len(line) for line in out.splitlines()) < 100
    assert main(["--all"]) == 0
    out = capsys.readouterr().out
    assert "| stage1 | 40 | 0.1 |" in out and "| vqa | 500 | - |" in out and "| total_s | 14.5 |" in out


def test_no_metrics_yet_is_one_line_and_exit_1(metrics_repo: Path, capsys) -> None:
    assert main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.json not found" in err[0] and "make demo" in err[0]
