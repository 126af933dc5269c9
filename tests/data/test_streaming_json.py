"""Streaming annotation readers (issue 12, item 2): peak memory stays flat and broken JSON names file and offset.

The RSS test parses a generated ~60 MB Karpathy file in fresh subprocesses (``benchmarks/ingest.py``'s own child
mode) with ``json.load`` and with the streaming reader, and a 400-entry file with the streaming reader; the
streaming peak must stay near the small file's and far below ``json.load``'s.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.data.raw import RawLayoutError, open_coco, open_sbu, open_vg, open_vqav2
from vlmo_pipeline.data.raw.karpathy import open_karpathy_entries

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

REPO = Path(__file__).resolve().parents[2]
BENCHMARK = REPO / "benchmarks" / "ingest.py"
_spec = importlib.util.spec_from_file_location("benchmarks_ingest", BENCHMARK)
ingest_benchmark = importlib.util.module_from_spec(_spec)  # benchmarks/ingest.py: the file writer + child mode
_spec.loader.exec_module(ingest_benchmark)


def peak_rss(path: Path, mode: str) -> dict:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--child-annotation", str(path), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_streaming_peak_rss_is_flat(tmp_path):
    big, small = tmp_path / "big" / "dataset_coco.json", tmp_path / "small" / "dataset_coco.json"
    entries = ingest_benchmark.write_karpathy_json(big, min_mb=60)
    ingest_benchmark.write_karpathy_json(small, entries=400)
    streaming_small = peak_rss(small, "streaming")
    streaming_big = peak_rss(big, "streaming")
    loaded_big = peak_rss(big, "json_load")
    assert streaming_big["records"] == loaded_big["records"] == entries
    growth = streaming_big["peak_rss_mb"] - streaming_small["peak_rss_mb"]
    loaded_growth = loaded_big["peak_rss_mb"] - streaming_small["peak_rss_mb"]
    # json.load of 60 MB costs several hundred MB; streaming adds only ijson's buffers.
    assert loaded_growth > 200, loaded_big
    assert growth < 0.1 * loaded_growth, (streaming_small, streaming_big, loaded_big)


def test_broken_karpathy_json_names_file_offset_and_entry(tmp_path):
    path = tmp_path / "karpathy" / "dataset_coco.json"
    entries = [raw_trees.karpathy_entry(f"{i}.jpg", "train", ["a"], filepath="train2014") for i in range(50)]
    text = json.dumps({"images": entries})
    cut = text.index('{"filename": "37.jpg"')
    path.parent.mkdir(parents=True)
    path.write_text(text[: cut + 30] + "}}, ,]" + text[cut + 30 :])
    with pytest.raises(RawLayoutError) as raised:
        open_coco(tmp_path, max_caption_chars=100)
    message = str(raised.value)
    assert str(path) in message and "near byte" in message and "images.item[37]" in message
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(RawLayoutError):  # raised before the output folder is touched
        ingest_dataset("coco", tmp_path, tmp_path / "out", IngestConfig(workers=0), show_progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    "document, message",
    [
        ([1, 2], "found a JSON start_array"),
        ({"dataset": "coco"}, "keys without an images list"),
        ({"images": {}}, "keys without an images list"),
    ],
)
def test_karpathy_wrong_layout(tmp_path, document, message):
    path = raw_trees.write_json(tmp_path / "dataset_coco.json", document)
    with pytest.raises(RawLayoutError, match=message):
        open_karpathy_entries(path)


def test_empty_images_list_is_fine(tmp_path):
    path = raw_trees.write_json(tmp_path / "dataset_coco.json", {"images": []})
    assert len(open_karpathy_entries(path)) == 0


def test_other_streamed_formats_report_broken_json(tmp_path, datasamples):
    vg = tmp_path / "vg"
    vg.mkdir()
    (vg / "image_data.json").write_bytes((datasamples / "vg" / "image_data.json").read_bytes())
    regions = (datasamples / "vg" / "region_descriptions.json").read_bytes()
    (vg / "region_descriptions.json").write_bytes(regions[: len(regions) // 2])  # cut in the middle
    with pytest.raises(RawLayoutError, match=r"region_descriptions\.json: not valid JSON .*near byte"):
        open_vg(vg, max_caption_chars=1000)

    sbu = tmp_path / "sbu"
    raw_trees.img2dataset_output(sbu / "images", [{"key": "000000000", "caption": "c", "image": b"x"}], layout="files")
    (sbu / "sbu-captions-all.json").write_text('{"image_urls": ["a", "b"], "user_ids": ["u"], "captions": ["c"]}')
    with pytest.raises(RawLayoutError, match="differ in length"):
        open_sbu(sbu, max_caption_chars=100)
    (sbu / "sbu-captions-all.json").write_text('{"image_urls": ["a"], "user_ids": ["u"], "captions": ["c"')
    with pytest.raises(RawLayoutError, match="not valid JSON"):
        open_sbu(sbu, max_caption_chars=100)
    sample = json.loads((datasamples / "sbu" / "sbu-captions-all.json").read_text())
    (sbu / "sbu-captions-all.json").write_text(json.dumps(sample))
    assert open_sbu(sbu, max_caption_chars=100).info["annotation_entries"] == 3

    vqa = tmp_path / "vqa"
    vqa.mkdir()
    questions = (datasamples / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text()
    (vqa / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        questions.replace('"question_id"', '"question_id" 1', 1)
    )
    raw_trees.write_json(vqa / "v2_mscoco_val2014_annotations.json", {"annotations": []})
    with pytest.raises(RawLayoutError, match=r"questions\.json: not valid JSON .*questions\.item\[0\]"):
        open_vqav2(vqa, max_caption_chars=100, image_root=tmp_path)
