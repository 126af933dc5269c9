"""Issue 12, verified data: the Datasets open shards only through the manifest and refuse what does not match it."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from vlmo_pipeline.data.arrow_io import (
    FAILURE_NAME,
    DatasetNotReadyError,
    ShardError,
    SplitWriters,
    schema_for,
    verify_dataset,
)
from vlmo_pipeline.data.datasets import CorruptSampleError, ImageOnlyDataset
from vlmo_pipeline.data.shards import ShardedArrowTable, list_shards
from vlmo_pipeline.models.transforms import build_eval_transform

try:
    from . import raw_trees, verified_worlds
except ImportError:  # tests/data is not a package
    import raw_trees
    import verified_worlds

TRANSFORM = build_eval_transform(8)


def open_images(dataset_dir, **options):
    return ImageOnlyDataset((dataset_dir, "train"), transform=TRANSFORM, **options)


@pytest.fixture()
def coco(tmp_path):
    """Ingested coco, 5 train rows in shards of 2, 2, 1."""
    return verified_worlds.ingest_coco(tmp_path)


def test_good_dataset_opens_through_its_manifest(coco):
    (coco / "train-00009.arrow").write_bytes((coco / "train-00000.arrow").read_bytes())  # stray, never listed
    dataset = open_images(coco)
    assert len(dataset) == 5 and [p.name for p in dataset.shard_paths] == [f"train-0000{i}.arrow" for i in range(3)]
    assert dataset[4]["image"].shape == (3, 8, 8)
    assert len(open_images(coco, verify="sha256")) == 5


def test_caption_edited_in_place_is_caught_by_sha256_only(coco):
    shard = coco / "train-00001.arrow"
    data = shard.read_bytes()
    assert data.count(b"a picture number 2") == 1
    shard.write_bytes(data.replace(b"a picture number 2", b"a picture number X"))  # same length, same size
    assert len(open_images(coco)) == 5  # sizes, rows and schema still match: the cheap open cannot tell
    with pytest.raises(ShardError, match=rf"^{shard}: sha256 .* differs from the manifest"):
        open_images(coco, verify="sha256")
    problems = verify_dataset(coco)
    assert len(problems) == 1 and problems[0].startswith(f"{shard}: sha256")


def test_truncated_shard_is_refused_naming_it(coco):
    shard = coco / "train-00002.arrow"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(ShardError, match=rf"^{shard}: \d+ bytes, the manifest says \d+"):
        open_images(coco)
    # Read without the manifest's size: the Arrow error is wrapped and names the shard too.
    with pytest.raises(ShardError, match=rf"^{shard}: not a readable Arrow IPC file"):
        ShardedArrowTable([shard])
    assert any(p.startswith(f"{shard}: ") and "bytes" in p for p in verify_dataset(coco))


def test_missing_shard_is_refused(coco):
    (coco / "train-00001.arrow").unlink()
    with pytest.raises(ShardError, match=rf"^{coco / 'train-00001.arrow'}: listed in the manifest but missing"):
        open_images(coco)
    assert verify_dataset(coco) == [f"{coco / 'train-00001.arrow'}: listed in the manifest but missing"]


def _replace_shard(coco, rows, schema):
    """Overwrite train-00000.arrow with ``rows`` written by the project's writer; fix the manifest's byte size."""
    scratch = coco.parent / "scratch"
    writers = SplitWriters(scratch, schema, shard_rows=100)
    for row in rows:
        writers.write("train", row)
    (info,) = writers.close()
    shutil.copyfile(scratch / info.file, coco / "train-00000.arrow")

    def fix_size(manifest):
        manifest["shards"][0]["bytes"] = info.bytes
        manifest["shards"][0]["sha256"] = info.sha256

    verified_worlds.edit_manifest(coco, fix_size)


def test_extra_rows_are_refused(coco):
    image = raw_trees.image_bytes()
    rows = [{"image": image, "caption": [f"c{i}"], "image_id": f"{i}.jpg", "split": "train"} for i in range(3)]
    _replace_shard(coco, rows, schema_for("coco"))
    with pytest.raises(ShardError, match=rf"^{coco / 'train-00000.arrow'}: 3 rows, the manifest says 2"):
        open_images(coco)
    assert verify_dataset(coco) == [f"{coco / 'train-00000.arrow'}: 3 rows, the manifest says 2"]


def test_wrong_schema_is_refused(coco):
    rows = [{"caption": [f"c{i}"], "source": "x", "split": "train"} for i in range(2)]
    _replace_shard(coco, rows, schema_for("text"))
    with pytest.raises(ShardError, match=rf"^{coco / 'train-00000.arrow'}: schema is not the coco schema"):
        open_images(coco)
    (problem,) = verify_dataset(coco)
    assert "schema is not the coco schema" in problem and "missing image" in problem


def test_directory_without_manifest_or_with_failed_ingestion_is_refused(coco):
    (coco / FAILURE_NAME).write_text(json.dumps({"status": "failed", "problems": ["too many rejects"]}))
    with pytest.raises(DatasetNotReadyError, match=rf"^{coco}: the last ingestion of this dataset failed") as error:
        open_images(coco)
    assert "too many rejects" in str(error.value) and "re-run the ingest pipeline" in str(error.value)
    (coco / FAILURE_NAME).unlink()
    (coco / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{coco}: no manifest.json .*run the ingest pipeline"):
        list_shards(coco.parent, "coco", "train")


def test_unknown_split_names_the_manifest_splits(coco):
    with pytest.raises(FileNotFoundError, match=r"no shard for split 'val'.*splits present: train"):
        ImageOnlyDataset((coco, "val"), transform=TRANSFORM)


def _images_with_corrupt_rows(tmp_path, n, bad):
    good = raw_trees.image_bytes()
    rows = [
        {"image": b"not an image" if i in bad else good, "caption": ["c"], "image_id": f"{i}.jpg", "split": "train"}
        for i in range(n)
    ]
    return verified_worlds.write_dataset(tmp_path / "coco", {"train": rows})


def test_fail_policy_raises_naming_shard_and_row(tmp_path):
    out = _images_with_corrupt_rows(tmp_path, 6, bad={5})
    dataset = open_images(out)
    with pytest.raises(CorruptSampleError, match=rf"{out / 'train-00001.arrow'} row 1 \(image_id '5.jpg'"):
        dataset[5]


def test_skip_policy_skips_at_most_its_rate_then_fails(tmp_path, caplog):
    out = _images_with_corrupt_rows(tmp_path, 20, bad={3, 4, 11})
    dataset = open_images(out, corrupt_policy="skip", max_corrupt_rate=0.1)  # 2 of 20 may be skipped
    assert dataset.max_corrupt_samples == 2
    with caplog.at_level(logging.WARNING, logger="vlmo_pipeline.data.datasets"):
        item = dataset[3]  # 3 and 4 are corrupt: both skipped, row 5 served
    assert item["image_index"] == 5 and dataset.corrupt_samples == {3, 4}
    assert "skipping corrupt sample 3 (1 of at most 2 skipped)" in caplog.text
    assert "skipping corrupt sample 4 (2 of at most 2 skipped)" in caplog.text
    assert dataset[3]["image_index"] == 5  # known corrupt samples are not counted twice
    assert [dataset[i]["image_index"] for i in (0, 10, 12)] == [0, 10, 12]
    with pytest.raises(CorruptSampleError, match=r"3 corrupt samples of 20 exceed max_corrupt_rate 0.1"):
        dataset[11]


def test_options_are_checked(coco):
    with pytest.raises(ValueError, match="verify must be one of"):
        open_images(coco, verify="md5")
    with pytest.raises(ValueError, match="corrupt_policy must be one of"):
        open_images(coco, corrupt_policy="ignore")


def test_damaged_record_batch_message_names_shard_and_batch(tmp_path):
    image = raw_trees.image_bytes()
    rows = [{"image": image, "caption": ["c"], "image_id": f"{i}.jpg", "split": "train"} for i in range(4)]
    out = verified_worlds.write_dataset(tmp_path / "coco", {"train": rows})  # one shard, 2 batches of 2 rows
    shard = out / "train-00000.arrow"
    data = bytearray(shard.read_bytes())
    messages = [i for i in range(len(data) - 3) if data[i : i + 4] == b"\xff\xff\xff\xff"]  # schema, batch 0, 1
    data[messages[2] + 8 : messages[2] + 20] = b"\xee" * 12  # garble batch 1's flatbuffer header, same size
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"^{shard} record batch 1: unreadable \(Invalid flatbuffers"):
        open_images(out)
    problems = verify_dataset(out)
    assert problems[0].startswith(f"{shard}: sha256") and problems[1].startswith(f"{shard} record batch 1: ")
