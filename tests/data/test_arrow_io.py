"""ShardWriter, manifest, reject log and shard reading (vlmo_pipeline.data.arrow_io)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from vlmo_pipeline.data import arrow_io
from vlmo_pipeline.data.arrow_io import (
    SCHEMA_VERSION,
    RejectLog,
    ShardWriter,
    load_manifest,
    open_shard,
    prepare_output_dir,
    read_rejects,
    read_split,
    schema_for,
    sha256_file,
    verify_dataset,
    write_manifest,
)
from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.data.raw.records import Reject

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees


def caption_row(index: int, image_size: int = 100) -> dict:
    return {
        "image": bytes([index % 256]) * image_size,
        "caption": [f"caption {index}", "second"],
        "image_id": f"img{index}",
        "split": "train",
    }


def test_shards_roll_over_by_rows_and_read_back_equal(tmp_path):
    writer = ShardWriter(tmp_path, "train", schema_for("coco"), shard_rows=4, shard_bytes=None, batch_rows=3)
    rows = [caption_row(i) for i in range(10)]
    for row in rows:
        writer.write(row)
    shards = writer.close()
    assert [s.file for s in shards] == ["train-00000.arrow", "train-00001.arrow", "train-00002.arrow"]
    assert [s.rows for s in shards] == [4, 4, 2]
    for shard in shards:
        path = tmp_path / shard.file
        assert shard.sha256 == sha256_file(path)
        assert shard.bytes == path.stat().st_size
    read_back = [row for s in shards for row in open_shard(tmp_path / s.file).to_pylist()]
    assert read_back == rows
    # batch_rows=3 inside a 4-row shard: two record batches (3 + 1).
    assert pa.ipc.open_file(pa.memory_map(str(tmp_path / shards[0].file))).num_record_batches == 2


def test_shards_roll_over_by_payload_bytes(tmp_path):
    writer = ShardWriter(tmp_path, "train", schema_for("coco"), shard_rows=None, shard_bytes=300)
    for i in range(10):
        writer.write(caption_row(i, image_size=100))
    # each row carries a bit more than 100 payload bytes, so a shard closes after its third row
    assert [s.rows for s in writer.close()] == [3, 3, 3, 1]


def test_shard_in_progress_is_hidden_until_finished(tmp_path):
    writer = ShardWriter(tmp_path, "val", schema_for("coco"), shard_rows=5, batch_rows=2)
    for i in range(3):
        writer.write(caption_row(i))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".val-00000.arrow.tmp"]  # two rows flushed into the hidden file, nothing published
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="shard_rows or shard_bytes"):
        ShardWriter(tmp_path, "train", schema_for("coco"), shard_rows=None, shard_bytes=None)
    with pytest.raises(ValueError, match="split name"):
        ShardWriter(tmp_path, "../x", schema_for("coco"))
    writer = ShardWriter(tmp_path, "train", schema_for("coco"))
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError)):
        writer.write({"image": "not bytes", "caption": "not a list", "image_id": 3, "split": "train"})
        writer.close()


def test_schemas_match_the_data_layout_contract():
    assert schema_for("coco").names == ["image", "caption", "image_id", "split"]
    assert schema_for("vqav2").field("answer_scores").type == pa.list_(pa.list_(pa.float64()))
    assert schema_for("vqav2").field("image_id").type == pa.int64()
    assert schema_for("nlvr2").names == ["image_0", "image_1", "questions", "answers", "identifier", "split"]
    assert schema_for("text").names == ["caption", "source", "split"]
    assert schema_for("vg").metadata[b"vlmo_pipeline.schema_version"] == str(SCHEMA_VERSION).encode()
    with pytest.raises(KeyError, match="unknown dataset"):
        schema_for("imagenet")


def test_prepare_output_dir_removes_only_our_files(tmp_path):
    for name in [
        "train-00000.arrow",
        ".train-00001.arrow.tmp",
        "manifest.json",
        "rejects.jsonl",
        ".manifest.json.tmp",
        "answer_vocab.json",
        "notes.txt",
        "train-final.arrow",
    ]:
        (tmp_path / name).write_text("x")
    prepare_output_dir(tmp_path, extra_files=["answer_vocab.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "train-final.arrow"]


def test_manifest_is_atomic_and_versioned(tmp_path):
    write_manifest(tmp_path, {"schema_version": SCHEMA_VERSION, "dataset": "coco", "splits": {}, "shards": []})
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert load_manifest(tmp_path)["dataset"] == "coco"
    write_manifest(tmp_path, {"schema_version": SCHEMA_VERSION + 1, "dataset": "coco"})
    with pytest.raises(ValueError, match="schema_version"):
        load_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        load_manifest(tmp_path / "missing")


def test_reject_log_writes_jsonl_on_close(tmp_path):
    log = RejectLog(tmp_path)
    log.add(Reject("a.jpg", "ann.json", "missing_file", "gone"))
    log.add(Reject("b.jpg", "ann.json:3", "zero_byte"))
    assert not (tmp_path / "rejects.jsonl").exists()  # published on close only
    log.close()
    assert read_rejects(tmp_path) == [
        {"record": "a.jpg", "source": "ann.json", "reason": "missing_file", "detail": "gone"},
        {"record": "b.jpg", "source": "ann.json:3", "reason": "zero_byte"},
    ]
    assert log.by_reason == {"missing_file": 1, "zero_byte": 1}
    with pytest.raises(ValueError, match="unknown reject reason"):
        Reject("c", "s", "something_else")


def test_open_shard_rejects_a_non_arrow_file(tmp_path):
    (tmp_path / "train-00000.arrow").write_bytes(b"not an arrow file at all")
    with pytest.raises(ValueError, match="not a readable Arrow IPC file"):
        open_shard(tmp_path / "train-00000.arrow")


def _coco_raw(tmp_path: Path, n: int) -> Path:
    raw = tmp_path / "raw"
    raw_trees.coco_tree(raw, [("train", "train2014", i + 1, [f"a picture number {i}"]) for i in range(n)])
    return raw


def test_manifest_lists_verified_shards_and_detects_tampering(tmp_path):
    raw = _coco_raw(tmp_path, 5)
    out = tmp_path / "out"
    manifest = ingest_dataset("coco", raw, out, IngestConfig(workers=0, shard_rows=2), show_progress=False)
    assert manifest["splits"]["train"] == 5
    assert [s["rows"] for s in manifest["shards"]] == [2, 2, 1]
    assert verify_dataset(out) == []
    assert read_split(out, "train").num_rows == 5
    shard = out / manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-40] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert any("sha256" in problem for problem in verify_dataset(out))


def _assert_no_partial_shards(out: Path) -> None:
    assert not list(out.glob(".*.tmp"))
    for shard in out.glob("*.arrow"):
        open_shard(shard)  # every published shard is a complete IPC file
    assert not (out / "manifest.json").exists()


def test_crash_mid_run_leaves_no_partial_shard_and_rerun_succeeds(tmp_path, monkeypatch):
    raw = _coco_raw(tmp_path, 7)
    out = tmp_path / "out"
    config = IngestConfig(workers=0, shard_rows=3, batch_rows=2)
    real_finish = ShardWriter._finish_shard

    def finish_then_crash(self):
        real_finish(self)
        if len(self.shards) == 1:
            raise RuntimeError("simulated crash after the first shard")

    monkeypatch.setattr(ShardWriter, "_finish_shard", finish_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_dataset("coco", raw, out, config, show_progress=False)
    _assert_no_partial_shards(out)
    assert [p.name for p in out.glob("*.arrow")] == ["train-00000.arrow"]

    monkeypatch.setattr(ShardWriter, "_finish_shard", real_finish)
    manifest = ingest_dataset("coco", raw, out, config, show_progress=False)
    assert manifest["splits"]["train"] == 7
    assert verify_dataset(out) == []


def test_killed_process_leaves_only_a_hidden_tmp_which_the_rerun_removes(tmp_path):
    """A hard kill (os._exit, no cleanup) half-way through a shard, then a clean re-run."""
    raw = _coco_raw(tmp_path, 8)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os
        from vlmo_pipeline.data.arrow_io import ShardWriter
        from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
        real_flush = ShardWriter._flush_batch
        def flush_then_die(self):
            real_flush(self)
            if len(self.shards) == 1 and self._shard_rows >= 2:
                os._exit(9)  # killed: second shard half written
        ShardWriter._flush_batch = flush_then_die
        ingest_dataset("coco", {str(raw)!r}, {str(out)!r}, IngestConfig(workers=0, shard_rows=4, batch_rows=2),
                       show_progress=False)
    """)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(arrow_io.__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        ".rejects.jsonl.tmp",
        ".train-00001.arrow.tmp",
        "train-00000.arrow",
    ]
    open_shard(out / "train-00000.arrow")
    with pytest.raises(ValueError):
        open_shard(out / ".train-00001.arrow.tmp")  # the half-written shard is not a valid file

    manifest = ingest_dataset("coco", raw, out, IngestConfig(workers=0, shard_rows=4), show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "rejects.jsonl",
        "train-00000.arrow",
        "train-00001.arrow",
    ]
    assert manifest["splits"]["train"] == 8
    assert json.loads((out / "manifest.json").read_text())["shards"] == manifest["shards"]
