"""`make plots`: `dvc plots show` with our HTML template renders offline (vega from the page's own folder), the
loss-curve template drops the empty epoch-end rows, and a missing library or a bad template is reported clearly.

The page is rendered by the real DVC in a scratch git + DVC repository; the libraries are the ones `make setup`
fetched into the venv (tests that need them skip when they are missing, e.g. on a machine without npm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from vlmo_pipeline.tools.dvc_plots import (
    MANIFEST,
    REMOTE_SCRIPT,
    VEGA_PACKAGES,
    PlotsError,
    fetch_vega,
    main,
    missing_vega_files,
    show_plots,
)
from vlmo_pipeline.tools.viz_snapshot import CHROMIUM_FLAGS, find_chromium

TEMPLATE = REPO / "scripts" / "dvc_plots_template.html"
VEGA_DIR = Path(sys.prefix) / "vega"

LOSS_CSV = """epoch,step,train/loss_epoch,train/loss_step
0,1,,2.5
0,3,,2.25
0,4,2.3,
1,5,,1.75
"""


def _env() -> dict[str, str]:
    return dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1"
    )


def _run(cwd: Path, *args: str) -> None:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"


@pytest.fixture
def plots_repo(tmp_path: Path) -> Path:
    """A git + DVC repository with one loss log declared as a plot that uses the project's loss_steps template."""
    repo = tmp_path / "repo"
    (repo / "logs").mkdir(parents=True)
    _run(repo, "git", "init", "-q")
    _run(repo, sys.executable, "-m", "dvc", "init", "-q")
    (repo / ".dvc" / "plots").mkdir(exist_ok=True)
    shutil.copy(REPO / ".dvc" / "plots" / "loss_steps.json", repo / ".dvc" / "plots" / "loss_steps.json")
    (repo / "scripts").mkdir()
    shutil.copy(TEMPLATE, repo / "scripts" / TEMPLATE.name)
    (repo / "logs" / "metrics.csv").write_text(LOSS_CSV)
    (repo / "dvc.yaml").write_text(
        "plots:\n  - logs/metrics.csv:\n      template: loss_steps\n      x: step\n      y: train/loss_step\n"
    )
    return repo


@pytest.fixture
def vega_dir() -> Path:
    if missing_vega_files(VEGA_DIR):
        pytest.skip(f"vega libraries not fetched into {VEGA_DIR} (make setup needs npm for that)")
    return VEGA_DIR


def _plot_spec(page: str) -> dict:
    """The vega-lite spec DVC embedded for the one plot of the page."""
    found = re.search(r"var spec\s*=\s*", page)
    assert found, "no vega spec in the page"
    spec, _ = json.JSONDecoder().raw_decode(page[found.end() :])
    return spec


def _rendered_dom(chromium: str, page: Path) -> str:
    """The page's DOM after headless Chromium ran its scripts (opened from a file:// URL, no network)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout


def test_page_renders_offline_with_the_libraries_beside_it(plots_repo: Path, vega_dir: Path, monkeypatch):
    monkeypatch.setenv("PATH", _env()["PATH"])
    page, offline = show_plots(Path("out/plots"), vega_dir, Path("scripts") / TEMPLATE.name, project=plots_repo)
    assert offline and page == plots_repo / "out" / "plots" / "index.html"
    html = page.read_text()
    assert not REMOTE_SCRIPT.search(html) and "cdn.jsdelivr" not in html
    for package in VEGA_PACKAGES:
        assert f'<script src="{package}.min.js">' in html
        assert (page.parent / f"{package}.min.js").read_bytes() == (vega_dir / f"{package}.min.js").read_bytes()
    spec = _plot_spec(html)
    steps = [row["step"] for row in spec["data"]["values"]]
    assert steps == ["1", "3", "4", "5"]  # the data is in the page, epoch-end row included ...
    assert spec["transform"][0]["filter"] == "datum['train/loss_step'] != null && datum['train/loss_step'] !== ''"
    assert not list(page.parent.parent.glob(".plots.*")), "staging folder left behind"


def test_chromium_draws_the_plot_from_file_urls(plots_repo: Path, vega_dir: Path, tmp_path: Path, monkeypatch):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (make setup installs Debian's chromium)")
    monkeypatch.setenv("PATH", _env()["PATH"])
    page, _ = show_plots(Path("out"), vega_dir, Path("scripts") / TEMPLATE.name, project=plots_repo)
    dom = _rendered_dom(chromium, page)
    # vega-embed ran (no network: the scripts came from the folder) and drew a non-empty canvas
    assert 'class="vega-embed' in dom, dom[-2000:]
    assert '<canvas width="0"' not in dom and "<canvas" in dom


def test_missing_libraries_fall_back_to_the_dvc_page_with_a_warning(
    plots_repo: Path, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.setenv("PATH", _env()["PATH"])
    page, offline = show_plots(Path("out"), tmp_path / "no-vega", Path("scripts") / TEMPLATE.name, project=plots_repo)
    assert not offline and "cdn.jsdelivr.net" in page.read_text()
    assert "warning: vega libraries missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("<html>{scripts}{plot_divs}</html>", "remove the {scripts} placeholder"),
        ("<html><body></body></html>", "no {plot_divs} placeholder"),
        ('<script src="https://cdn.example/vega.js"></script>{plot_divs}', "loads a script from the network"),
    ],
)
def test_bad_templates_are_refused(plots_repo: Path, vega_dir: Path, text: str, message: str, monkeypatch):
    monkeypatch.setenv("PATH", _env()["PATH"])
    (plots_repo / "bad.html").write_text(text)
    with pytest.raises(PlotsError, match=message):
        show_plots(Path("out"), vega_dir, Path("bad.html"), project=plots_repo)
    assert not (plots_repo / "out").exists()


def test_fetch_is_a_no_op_when_present_and_warns_without_npm(tmp_path: Path, monkeypatch, capsys):
    present = tmp_path / "present"
    present.mkdir()
    for package in VEGA_PACKAGES:
        (present / f"{package}.min.js").write_text("// stand-in")
    (present / MANIFEST).write_text(json.dumps({"vega": "5.0.0"}))
    # npm is never called when everything is there (a missing npm binary would raise)
    assert fetch_vega(present, npm=str(tmp_path / "no-npm")) == {"vega": "5.0.0"}

    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(FileNotFoundError, match="npm not found"):
        fetch_vega(tmp_path / "empty")
    assert main(["fetch", "--vega-dir", str(tmp_path / "empty")]) == 0  # setup must not fail without npm
    assert "warning: npm not found" in capsys.readouterr().err
    assert missing_vega_files(tmp_path / "empty") == [*(f"{p}.min.js" for p in VEGA_PACKAGES), MANIFEST]


def test_plain_dvc_plots_show_renders_offline_after_configure(plots_repo: Path, vega_dir: Path, monkeypatch):
    """`dvc plots show` as a user types it (DVC's own output folder) gets the inlined template from config.local."""
    monkeypatch.setenv("PATH", _env()["PATH"])
    monkeypatch.chdir(plots_repo)
    assert main(["configure", "--vega-dir", str(vega_dir)]) == 0
    assert "html_template" in (plots_repo / ".dvc" / "config.local").read_text()
    _run(plots_repo, sys.executable, "-m", "dvc", "plots", "show")
    page = plots_repo / "dvc_plots" / "index.html"
    html = page.read_text()
    assert not REMOTE_SCRIPT.search(html) and "cdn.jsdelivr" not in html
    assert not list(page.parent.glob("*.js")), "the libraries should be inside the page, not beside it"
    for package in VEGA_PACKAGES:
        assert (vega_dir / f"{package}.min.js").read_text() in html
    chromium = find_chromium()
    if chromium is None:
        return
    dom = _rendered_dom(chromium, page)
    assert 'class="vega-embed' in dom and "<canvas" in dom and '<canvas width="0"' not in dom, dom[-2000:]


def test_every_loss_plot_is_titled_by_its_stage_and_the_combined_plot_colours_by_stage(tmp_path: Path, monkeypatch):
    import yaml

    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    logs = {}
    for stage, definition in dvc_yaml["stages"].items():
        for plot in definition.get("plots", []):
            ((path, props),) = plot.items()
            assert stage in props["title"] and "/" not in props["title"], (stage, props)
            logs[path.split("/")[-2]] = path
    combined = next(plot["training_loss"] for plot in dvc_yaml["plots"] if "training_loss" in plot)
    assert sorted(combined["y"]) == sorted(logs.values()), "the combined plot must show every stage's log"

    # render the combined plot with real DVC from two stages' logs: one colour per stage folder
    repo = tmp_path / "repo"
    repo.mkdir()
    _run(repo, "git", "init", "-q")
    _run(repo, sys.executable, "-m", "dvc", "init", "-q")
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
    for stage in ("stage1", "vqa"):
        (repo / "data" / "08_reporting" / stage).mkdir(parents=True)
        (repo / "data" / "08_reporting" / stage / "metrics.csv").write_text(LOSS_CSV)
    two = {name: value for name, value in combined.items() if name != "y"}
    two["y"] = {logs[stage]: "train/loss_step" for stage in ("stage1", "vqa")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": [{"training_loss": two}]}))
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json"],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (spec,) = [entry["content"] for entries in json.loads(result.stdout)["data"].values() for entry in entries]
    assert spec["encoding"]["color"]["field"] == "stage"
    stage_expr = next(step["calculate"] for step in spec["transform"] if step.get("as") == "stage")
    # DVC shortens the file names to what differs ("stage1/metrics.csv"); the stage is the folder name either way
    assert {row["filename"].split("/")[-2] for row in spec["data"]["values"]} == {"stage1", "vqa"}
    assert "'data/08_reporting/', ''" in stage_expr and "'/metrics.csv', ''" in stage_expr
