"""Kedro-Viz rendered in a real headless Chromium shows the project's pipeline graph alone, every node in view.

A real `kedro viz run` server and a real browser (driven through the DevTools protocol); one server and one
browser for the whole graph and the three group pictures, so it stays well under a minute.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vlmo_pipeline.pipeline_registry import register_pipelines
from vlmo_pipeline.tools.viz_snapshot import DEFAULT_VIEWS, GROUPS, WHOLE, find_chromium, sibling_png, snapshot

# What Kedro-Viz's onboarding tour and update banner put on the page (kedro-viz 12.5 bundle).
TOUR_TITLES = (
    "Workflow run status",
    "Publish and share Kedro-Viz",
    "Preview your datasets in the metadata panel",
    "Plotly and Matplotlib",
    "Filters and tags",
    "Settings panel",
)
BANNER_TEXTS = ("is here!", "You're up to date", "View release notes", "pip install -U kedro-viz")
TOUR_STEP = re.compile(r"\b\d+ of \d+\b")  # "1 of 6"


def _drawn_names(pipeline_names) -> set[str]:
    """Nodes and datasets (parameters are hidden by default in Kedro-Viz) of the union of these pipelines."""
    registry = register_pipelines()
    names: set[str] = set()
    for pipeline_name in pipeline_names:
        pipeline = registry[pipeline_name]
        names |= {node.name for node in pipeline.nodes}
        names |= {name for name in pipeline.datasets() if not (name == "parameters" or name.startswith("params:"))}
    return names


@pytest.fixture(scope="module")
def expected() -> dict[str, set[str]]:
    views = {WHOLE.name: _drawn_names(["__default__"])}
    views.update({group: _drawn_names(pipelines) for group, pipelines in GROUPS.items()})
    return views


@pytest.mark.slow
def test_kedro_viz_pictures_show_every_node_and_no_pop_up(kedro_project: Path, tmp_path: Path, expected):
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine (make setup installs Debian's `chromium` where apt-get can run)")
    pytest.importorskip("websockets.sync.client", reason="the DevTools client needs websockets (kedro-viz brings it)")
    out = tmp_path / "kedro_viz.png"
    results = snapshot(kedro_project, out, expected=expected)

    assert list(results) == [view.name for view in DEFAULT_VIEWS] == ["all", "data", "pretraining", "finetuning"]
    assert {result.screenshot.name for result in results.values()} == {
        "kedro_viz.png",
        "kedro_viz_data.png",
        "kedro_viz_pretraining.png",
        "kedro_viz_finetuning.png",
    }
    for view in DEFAULT_VIEWS:
        result = results[view.name]
        assert result.screenshot == sibling_png(out.resolve(), view)
        png = result.screenshot.read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000, f"{view.name}: the screenshot is not a rendered page"

        # the graph alone: no onboarding tour, no update banner, no modal
        assert not result.overlays, f"{view.name}: pop-ups on the page: {result.overlays}"
        shown = [text for text in (*TOUR_TITLES, *BANNER_TEXTS) if text in result.page_text]
        assert not shown, f"{view.name}: tour/banner text on the page: {shown}"
        assert not TOUR_STEP.search(result.page_text), f"{view.name}: a tour step counter is on the page"

        # every node and dataset of the view's pipelines is drawn, wholly inside the window, and nothing else
        assert set(result.nodes) == expected[view.name], (
            f"{view.name}: drawn but not expected {sorted(set(result.nodes) - expected[view.name])}, "
            f"expected but not drawn {sorted(expected[view.name] - set(result.nodes))}"
        )
        assert not result.not_in_window, f"{view.name}: not wholly inside the window: {result.not_in_window}"
        assert result.zoom >= 0.6, f"{view.name}: graph drawn at {result.zoom:.0%}, too small to read"

    assert {"raw_coco", "coco_arrow", "generate_demo_world", "evaluate_models"} <= set(results["all"].nodes)
    assert "pretrain_stage1" not in results["data"].nodes and "build_vocab" in results["data"].nodes
    assert "evaluate_models" in results["finetuning"].nodes and "ingest_coco" not in results["finetuning"].nodes
