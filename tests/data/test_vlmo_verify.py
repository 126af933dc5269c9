"""`vlmo verify` as a real subprocess: OK lines for good datasets, one error line per problem naming the shard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    from . import verified_worlds
except ImportError:  # tests/data is not a package
    import verified_worlds

REPO = Path(__file__).resolve().parents[2]


def vlmo_verify(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlmo_pipeline.commands.vlmo", "verify", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny data/03_primary: two ingested coco-kind datasets (5 and 3 train rows)."""
    primary = tmp_path_factory.mktemp("world") / "03_primary"
    verified_worlds.ingest_coco(primary, "coco", n=5)
    verified_worlds.ingest_coco(primary, "f30k_like", n=3)
    return primary


def test_good_world_prints_ok_and_exits_0(world):
    result = vlmo_verify(world)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"OK {world / 'coco'}: coco train=5, restval=0, val=0, test=0 (3 shards, sha256 checked)",
        f"OK {world / 'f30k_like'}: coco train=3, restval=0, val=0, test=0 (2 shards, sha256 checked)",
    ]
    single = vlmo_verify(world / "coco")
    assert single.returncode == 0 and single.stdout.splitlines() == [result.stdout.splitlines()[0]]


def test_caption_edited_in_place_is_one_error_line_naming_the_shard(tmp_path):
    coco = verified_worlds.ingest_coco(tmp_path / "primary")
    shard = coco / "train-00001.arrow"
    data = shard.read_bytes()
    shard.write_bytes(data.replace(b"a picture number 3", b"a picture number 7"))
    assert shard.stat().st_size == len(data)
    result = vlmo_verify(tmp_path / "primary")
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"vlmo verify: error: {shard}: sha256 ") and "differs from the manifest" in line
    assert vlmo_verify("--quick", coco).returncode == 0  # sizes, rows and schema cannot see it


def test_problems_in_several_datasets_and_the_reject_log(tmp_path):
    primary = tmp_path / "primary"
    coco = verified_worlds.ingest_coco(primary, "coco")
    other = verified_worlds.ingest_coco(primary, "other", n=2)
    truncated = coco / "train-00002.arrow"
    truncated.write_bytes(truncated.read_bytes()[:-3])
    (other / "rejects.jsonl").write_text('{"record": "x"}\nnot json\n', encoding="utf-8")
    result = vlmo_verify(primary)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"vlmo verify: error: {truncated}: ") and "bytes, the manifest says" in lines[0]
    assert lines[1] == f"vlmo verify: error: {other / 'rejects.jsonl'} line 2: not JSON (Expecting value)"


def test_failed_ingestion_missing_dir_and_usage(tmp_path):
    broken = tmp_path / "primary" / "coco"
    broken.mkdir(parents=True)
    (broken / "ingest_failed.json").write_text('{"problems": ["no rows"]}', encoding="utf-8")
    result = vlmo_verify(broken, tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"vlmo verify: error: {broken}: the last ingestion of this dataset failed (no rows); see "
        f"{broken / 'ingest_failed.json'}, repair the raw data or the parameters and re-run the ingest pipeline",
        f"vlmo verify: error: {tmp_path / 'nowhere'}: no such directory",
    ]
    usage = vlmo_verify()
    assert usage.returncode == 2 and usage.stderr.startswith("vlmo verify: error: the following arguments")
