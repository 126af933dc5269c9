"""Kedro-Viz rendered in a real headless Chromium shows the project's pipeline graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmo_pipeline.pipeline_registry import register_pipelines
from vlmo_pipeline.viz_snapshot import find_chromium, snapshot


@pytest.mark.slow
def test_kedro_viz_page_shows_every_node_of_the_default_pipeline(kedro_project: Path, tmp_path: Path):
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine (make setup installs Debian's `chromium` where apt-get can run)")
    result = snapshot(kedro_project, tmp_path / "kedro_viz.png")

    png = result.screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000, "the screenshot is not a rendered page"
    node_names = {node.name for node in register_pipelines()["__default__"].nodes}
    missing = sorted(name for name in node_names if name not in result.page_text)
    assert not missing, f"nodes not on the Kedro-Viz page: {missing}"
    assert "raw_coco" in result.page_text and "coco_arrow" in result.page_text
