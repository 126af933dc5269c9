"""DVC reproduces the Kedro pipelines: a second `dvc repro` is a no-op, a parameter change re-runs exactly the
stages downstream of it, and `dvc push` / `dvc pull` restore outputs byte for byte in a fresh clone. The whole
chain (tiny world, two training steps per stage) reaches `evaluate`: `dvc metrics show` / `dvc metrics diff`
print its numbers and `make plots`' page holds every loss curve and the recall@K data.

Each test works on a scratch git clone of this repository's tracked files with a tiny demo world.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.pipelines.test_kedro_training_pipelines import RUNS, _tiny_params
from vlmo_pipeline.tools.dvc_plots import REMOTE_SCRIPT, VEGA_PACKAGES, missing_vega_files

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


def _json_out(cwd: Path, *args: str) -> dict:
    """Run a `--json` command; its stdout parsed (DVC's warnings go to stderr)."""
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


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


def test_parameter_sweep_with_dvc_exp_run_set_param(dvc_repo: Path):
    """README "Real data at scale": `dvc exp run -S <params file>:<key>=<value>` runs the stages with the value,
    and `dvc exp show` lists the experiment with it."""
    spec = "conf/base/parameters_ingest.yml:ingest.shard_rows=7"
    output = _sh(dvc_repo, "dvc", "exp", "run", "-S", spec, "ingest_nlvr2", timeout=900)
    assert "ingest_nlvr2" in _stages_run(output)
    manifest = json.loads((dvc_repo / "data" / "03_primary" / "nlvr2" / "manifest.json").read_text())
    assert max(shard["rows"] for shard in manifest["shards"]) == 7
    shown = json.dumps(_json_out(dvc_repo, "dvc", "exp", "show", "--json"))
    assert '"shard_rows": 7' in shown


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


def _merge(target: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _shrink_everything(repo: Path) -> None:
    """Tiny parameters for every pipeline (the Kedro training test's): two steps per stage, batch 4."""
    for section, values in _tiny_params().items():
        path = repo / "conf" / "base" / f"parameters_{section}.yml"
        params = yaml.safe_load(path.read_text())
        _merge(params[section], values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))


def _git_commit(repo: Path, message: str) -> None:
    _sh(repo, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", message)


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_chain_reaches_evaluate_then_metrics_and_plots_show_its_numbers(dvc_repo: Path):
    _shrink_everything(dvc_repo)
    _git_commit(dvc_repo, "tiny chain")
    stages = _stages_run(_sh(dvc_repo, "dvc", "repro", "evaluate", timeout=1500))
    assert stages[-1] == "evaluate" and {"demo_data", "vocab", "pretrain_stage3", "finetune_nlvr2"} <= set(stages)
    reporting = dvc_repo / "data" / "08_reporting"
    metrics = json.loads((reporting / "metrics.json").read_text())
    report = reporting / "report"
    assert {"report.md", "retrieval_gallery.png", "vqa_examples.png", "nlvr2_examples.png", "recall_at_k.csv"} <= {
        path.name for path in report.iterdir()
    }

    # dvc metrics show: the evaluation numbers, as written by evaluate
    shown = _json_out(dvc_repo, "dvc", "metrics", "show", "--json")
    values = shown[""]["data"]["data/08_reporting/metrics.json"]["data"]
    assert values["retrieval"]["coco"] == metrics["retrieval"]["coco"] and values["vqa"] == metrics["vqa"]
    table = _sh(dvc_repo, "dvc", "metrics", "show")
    assert "retrieval.coco.tr_r1" in table and "vqa.score" in table and "nlvr2.dev_acc" in table

    # make plots: every stage's loss log and the recall@K table are in the page, which loads no remote script
    vega_dir = Path(sys.prefix) / "vega"
    command = [sys.executable, "-m", "vlmo_pipeline.tools.dvc_plots", "show", "--out", "data/08_reporting/dvc_plots"]
    if not missing_vega_files(vega_dir):
        command += ["--vega-dir", str(vega_dir)]
    printed = _sh(dvc_repo, *command)
    page = (reporting / "dvc_plots" / "index.html").read_text()
    assert "failed to load" not in printed, printed
    for run_name in RUNS.values():
        # one chart per run (DVC names its div after the log's path) and the run in the combined chart
        assert f"vegaEmbed('#data_08_reporting_{run_name}_metrics_csv'" in page, run_name
        assert f'"filename": "{run_name}/metrics.csv"' in page, run_name
        rows = list(csv.DictReader((reporting / run_name / "metrics.csv").open()))
        logged = [row["train/loss_step"] for row in rows if row["train/loss_step"]]
        assert logged and all(f'"train/loss_step": "{value}"' in page for value in logged), run_name
    recall = list(csv.DictReader((report / "recall_at_k.csv").open()))
    assert [row["k"] for row in recall] == ["1", "5", "10"]
    assert float(recall[0]["coco_t2i"]) == pytest.approx(metrics["retrieval"]["coco"]["ir_r1"], abs=1e-3)
    assert "Retrieval recall@K" in page and f'"coco_t2i": "{recall[0]["coco_t2i"]}"' in page
    if not missing_vega_files(vega_dir):
        assert not REMOTE_SCRIPT.search(page)
        assert all((reporting / "dvc_plots" / f"{package}.min.js").is_file() for package in VEGA_PACKAGES)

    # change a parameter -> dvc status names its section -> dvc repro re-runs evaluate only -> dvc metrics diff shows it
    _git_commit(dvc_repo, "tiny chain reproduced")
    _set_params(dvc_repo, "parameters_evaluate.yml", "evaluate", {"retrieval_split": "val"})
    status = _sh(dvc_repo, "dvc", "status")
    assert "evaluate" in status and "modified: evaluate" in " ".join(status.split()), status
    assert "pretrain_stage1" not in status and "finetune_vqa" not in status
    assert _stages_run(_sh(dvc_repo, "dvc", "repro", "evaluate")) == ["evaluate"]
    # HEAD's metrics.json comes from the DVC cache (data/ is git-ignored)
    diff = _json_out(dvc_repo, "dvc", "metrics", "diff", "--json")["data/08_reporting/metrics.json"]
    new = _flat(json.loads((reporting / "metrics.json").read_text()))
    old = _flat(metrics)
    assert "data.coco_val.images" in diff and diff["data.coco_val.images"]["new"] == new["data.coco_val.images"]
    assert diff["data.coco_test.images"]["old"] == old["data.coco_test.images"]
    changed = [key for key in old if key.startswith("chance.retrieval") and key in new and old[key] != new[key]]
    assert changed and all(diff[key]["old"] == old[key] and diff[key]["new"] == new[key] for key in changed)
    assert "evaluate.retrieval_split" in _sh(dvc_repo, "dvc", "params", "diff")
    printed = _sh(dvc_repo, "dvc", "metrics", "diff")
    assert "failed to load" not in printed and changed[0] in printed, printed

    # a stage-3 parameter: dvc status names only pretrain_stage3 (nothing upstream), and dvc repro re-runs stage 3
    # and exactly the stages downstream of its checkpoint
    _set_params(dvc_repo, "parameters_pretrain_stage3.yml", "pretrain_stage3", {"seed": 7})
    assert set(_json_out(dvc_repo, "dvc", "status", "--json")) == {"pretrain_stage3"}
    rerun = _stages_run(_sh(dvc_repo, "dvc", "repro"))
    assert rerun[0] == "pretrain_stage3" and rerun[-1] == "evaluate"
    assert set(rerun) == {
        "pretrain_stage3",
        "finetune_retrieval_coco",
        "finetune_retrieval_f30k",
        "finetune_vqa",
        "finetune_nlvr2",
        "evaluate",
    }
    assert _json_out(dvc_repo, "dvc", "status", "--json") == {}
