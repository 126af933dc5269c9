"""Partitioned ingestion (issue 13): N independent runs write disjoint parts, `vlmo merge-manifests` assembles them.

Every case runs the real readers on the generated demo world (with two COCO train images removed, so COCO and
VQAv2 have image rejects too) and compares the merged dataset with an unpartitioned run of the same input.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlmo_pipeline.commands.vlmo import main as vlmo_main
from vlmo_pipeline.data.arrow_io import load_manifest, read_split, verify_dataset
from vlmo_pipeline.data.demo import generate_demo_world
from vlmo_pipeline.data.ingest import DATASETS, IngestConfig, ingest_dataset
from vlmo_pipeline.data.partitions import PartitionError, merge_partitions, partition_dir
from vlmo_pipeline.pipelines.ingest.nodes import _config
from vlmo_pipeline.schema import ConfigError

PARTS = 3
CONFIG = {"workers": 0, "shard_rows": 5, "batch_rows": 2}
VLMO = Path(sys.executable).with_name("vlmo")
KEDRO = Path(sys.executable).with_name("kedro")


def _ingest(name: str, raw: Path, out: Path, **settings) -> dict:
    return ingest_dataset(name, raw / name, out, IngestConfig(**{**CONFIG, **settings}), show_progress=False)


def _ingest_parts(name: str, raw: Path, dataset_dir: Path, count: int = PARTS, **settings) -> list[Path]:
    parts = [partition_dir(dataset_dir, index, count) for index in range(count)]
    for index, part in enumerate(parts):
        _ingest(name, raw, part, num_partitions=count, partition=index, **settings)
    return parts


def _rows(dataset_dir: Path) -> dict[str, list[str]]:
    """Every row of every split as canonical JSON (image bytes as their sha256), sorted: order-free content."""

    def canonical(row: dict) -> str:
        return json.dumps(
            {k: hashlib.sha256(v).hexdigest() if isinstance(v, bytes) else v for k, v in row.items()}, sort_keys=True
        )

    manifest = load_manifest(dataset_dir)
    return {split: sorted(map(canonical, read_split(dataset_dir, split).to_pylist())) for split in manifest["splits"]}


def _rejects(dataset_dir: Path) -> list[str]:
    return sorted((dataset_dir / "rejects.jsonl").read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("partition_world") / "raw"
    generate_demo_world(root, n_images=24, show_progress=False)
    for image in sorted((root / "coco" / "train2014").iterdir())[:2]:  # missing_file rejects in coco and vqav2
        image.unlink()
    return root


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
    """``built(name)`` -> (unpartitioned dataset folder, merged dataset folder, its part folders), made once."""
    cache: dict[str, tuple[Path, Path, list[Path]]] = {}

    def build(name: str) -> tuple[Path, Path, list[Path]]:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"built_{name}")
            _ingest(name, raw, root / "single" / name)
            parts = _ingest_parts(name, raw, root / "primary" / name)
            merge_partitions(root / "primary" / name)
            cache[name] = (root / "single" / name, root / "primary" / name, parts)
        return cache[name]

    return build


@pytest.mark.parametrize("name", DATASETS)
def test_merged_dataset_equals_the_unpartitioned_run(built, name):
    single, merged, parts = built(name)
    assert verify_dataset(merged, level="sha256") == []
    one, many = load_manifest(single), load_manifest(merged)
    assert many["splits"] == one["splits"]
    assert (many["rejects"], many["rejects_by_reason"]) == (one["rejects"], one["rejects_by_reason"])
    assert many["info"] == one["info"] and many["artifacts"] == one["artifacts"]
    for artifact in one["artifacts"]:  # e.g. the VQA answer vocabulary: built from the whole input in every part
        assert (merged / artifact).read_bytes() == (single / artifact).read_bytes()
    assert _rows(merged) == _rows(single)
    assert _rejects(merged) == _rejects(single)
    # disjoint parts: their rows add up to the whole, and each part's shards are the merged ones (hard links)
    part_manifests = [load_manifest(part) for part in parts]
    assert [m["partition"]["index"] for m in part_manifests] == list(range(PARTS))
    for split, rows in one["splits"].items():
        assert sum(m["splits"][split] for m in part_manifests) == rows
    assert len({m["partition"]["input_sha256"] for m in part_manifests}) == 1
    record = many["partitions"]
    assert record["count"] == PARTS and [part["dir"] for part in record["parts"]] == [str(p) for p in parts]
    for part, entry in zip(parts, record["parts"]):
        for source, target in entry["shards"].items():
            assert (part / source).samefile(merged / target)
    assert "partition" not in many["parameters"] and many["parameters"]["num_partitions"] == PARTS


def test_vqa_vocabulary_and_rest_val_come_from_the_whole_input(raw, tmp_path):
    """The carve of val into trainable_val + rest_val is decided on all val images, in every partition."""
    settings = {"vqav2_rest_val_images": 4, "min_answer_count": 5}
    _ingest("vqav2", raw, tmp_path / "single", **settings)
    _ingest_parts("vqav2", raw, tmp_path / "vqav2", **settings)
    assert merge_partitions(tmp_path / "vqav2").status == "merged"
    assert load_manifest(tmp_path / "vqav2")["splits"] == load_manifest(tmp_path / "single")["splits"]
    assert load_manifest(tmp_path / "vqav2")["splits"]["rest_val"] == 4
    assert _rows(tmp_path / "vqav2") == _rows(tmp_path / "single")
    vocab = (tmp_path / "single" / "answer_vocab.json").read_bytes()
    for part in range(PARTS):
        assert (partition_dir(tmp_path / "vqav2", part, PARTS) / "answer_vocab.json").read_bytes() == vocab


def test_loaders_open_the_merged_datasets(built, tmp_path):
    from vlmo_pipeline.data.datasets import ImageTextDataset, VQADataset
    from vlmo_pipeline.models.tokenizer import VLMoTokenizer, train_wordpiece_vocab
    from vlmo_pipeline.models.transforms import build_eval_transform

    vocab = train_wordpiece_vocab(["a red cube left of two blue spheres", "how many"] * 2, tmp_path / "v.txt", 120)
    tokenizer, transform = VLMoTokenizer(vocab, max_len=40), build_eval_transform(32)
    _, coco, _ = built("coco")
    captions = ImageTextDataset(coco, split="train", transform=transform, tokenizer=tokenizer, verify="sha256")
    assert len(captions) > 0 and captions[len(captions) - 1]["image"].shape == (3, 32, 32)
    _, vqav2, _ = built("vqav2")
    questions = VQADataset(vqav2, split="val", transform=transform, tokenizer=tokenizer)
    assert questions.answer_vocab == json.loads((vqav2 / "answer_vocab.json").read_text())
    assert questions[0]["vqa_targets"].shape == (questions.num_labels,)


def test_execution_settings_may_differ_between_machines(raw, built, tmp_path):
    """Part 1 on a local Dask cluster with other chunks: same shard bytes, and the merge accepts it."""
    _, _, parts = built("coco")
    dask_part = partition_dir(tmp_path / "coco", 1, PARTS)
    _ingest(
        "coco", raw, dask_part, num_partitions=PARTS, partition=1, workers=2, chunk_size=2, worker_memory_limit=None
    )
    assert load_manifest(dask_part)["parameters"]["workers"] == 2
    for shard in load_manifest(dask_part)["shards"]:
        assert (dask_part / shard["file"]).read_bytes() == (parts[1] / shard["file"]).read_bytes()
    result = merge_partitions(tmp_path / "coco", [parts[0], dask_part, parts[2]])
    assert result.status == "merged" and verify_dataset(tmp_path / "coco") == []


def test_rerun_is_harmless_and_debris_of_a_killed_merge_goes(built):
    _, merged, parts = built("coco")
    before = (merged / "manifest.json").read_bytes()
    assert merge_partitions(merged).status == "up to date"
    assert (merged / "manifest.json").read_bytes() == before
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    debris = merged.with_name(f".{merged.name}.tmp-{int(dead.stdout)}")  # a staging folder of a killed merge
    debris.mkdir()
    (debris / "train-00000.arrow").write_bytes(b"half a shard")
    (merged / "train-00000.arrow").unlink()  # the dataset no longer verifies: the merge rebuilds it
    result = merge_partitions(merged, verify=True)
    assert result.status == "merged" and not debris.exists()
    assert verify_dataset(merged, level="sha256") == []


def _copy_parts(parts: list[Path], into: Path) -> list[Path]:
    into.mkdir()
    return [Path(shutil.copytree(part, into / part.name)) for part in parts]


def test_missing_duplicate_and_incomplete_parts_are_refused(built, tmp_path, capsys):
    single, _, parts = built("coco")
    copies = _copy_parts(parts, tmp_path / "primary")
    target = tmp_path / "primary" / "coco"
    shutil.rmtree(copies[1])
    with pytest.raises(PartitionError, match=rf"^{target}: 1 of 3 parts missing: {copies[1]} \(found parts \[0, 2\]\)"):
        merge_partitions(target)
    assert vlmo_main(["merge-manifests", str(target)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"vlmo merge-manifests: error: {target}: 1 of 3 parts missing")

    twin = Path(shutil.copytree(copies[0], tmp_path / "elsewhere" / "coco-first"))
    with pytest.raises(PartitionError, match=rf"^{twin}: duplicate of part 0 of 3 \(already given as {copies[0]}\)"):
        merge_partitions(target, [copies[0], twin, copies[2]])

    shutil.copytree(parts[1], copies[1])
    (copies[2] / "manifest.json").unlink()  # killed before its manifest: incomplete
    with pytest.raises(PartitionError, match=rf"^{copies[2]}: no manifest.json"):
        merge_partitions(target)
    assert not target.exists()

    shutil.copytree(parts[2], copies[2], dirs_exist_ok=True)
    (copies[2] / "train-00000.arrow").write_bytes(b"truncated")
    with pytest.raises(PartitionError, match=rf"^{copies[2] / 'train-00000.arrow'}: 9 bytes, the manifest says"):
        merge_partitions(target)
    assert not target.exists()


def test_parts_of_other_settings_input_or_counts_are_refused(raw, built, tmp_path):
    _, merged, parts = built("coco")
    before = (merged / "manifest.json").read_bytes()
    other = partition_dir(tmp_path / "coco", 2, PARTS)
    _ingest("coco", raw, other, num_partitions=PARTS, partition=2, shard_rows=3)
    with pytest.raises(
        PartitionError, match=rf"^{other}: ingested with other settings than part 0 .*shard_rows=3 here, 5"
    ):
        merge_partitions(merged, [parts[0], parts[1], other])
    assert (merged / "manifest.json").read_bytes() == before  # a refused merge leaves the dataset as it was

    edited = tmp_path / "edited_raw"
    shutil.copytree(raw / "coco", edited / "coco")
    karpathy = edited / "coco" / "karpathy" / "dataset_coco.json"
    document = json.loads(karpathy.read_text())
    document["images"][-1]["sentences"][0]["raw"] = "a caption only this machine has"
    karpathy.write_text(json.dumps(document))
    drifted = partition_dir(tmp_path / "drift" / "coco", 2, PARTS)
    _ingest("coco", edited, drifted, num_partitions=PARTS, partition=2)
    with pytest.raises(PartitionError, match=rf"^{drifted}: read another input than part 0 .* raw trees"):
        merge_partitions(merged, [parts[0], parts[1], drifted])

    halves = [partition_dir(tmp_path / "two" / "coco", index, 2) for index in range(2)]
    _ingest("coco", raw, halves[0], num_partitions=2, partition=0)
    with pytest.raises(PartitionError, match=rf"^{halves[0]}: part 0 of 2 partitions, but {parts[0]} is part 0 of 3"):
        merge_partitions(merged, [parts[0], halves[0]])
    with pytest.raises(PartitionError, match=r"not a partition \(its manifest has no 'partition' entry"):
        merge_partitions(tmp_path / "x" / "coco", [built("coco")[0]])
    with pytest.raises(PartitionError, match=r"a vqav2 part, but part 0 .* is coco"):
        merge_partitions(merged, [parts[0], built("vqav2")[2][1], parts[2]])


def test_partition_settings_are_checked():
    assert IngestConfig().num_partitions == 1 and IngestConfig().partition == 0
    with pytest.raises(ValueError, match="partition must be in 0..num_partitions-1 = 0..2, got 3"):
        IngestConfig(num_partitions=3, partition=3)
    with pytest.raises(ValueError, match="num_partitions must be >= 1"):
        IngestConfig(num_partitions=0)
    with pytest.raises(ConfigError, match="ingest.partition: expected an integer, got str '1'"):
        _config({"num_partitions": 2, "partition": "1"}, "coco")
    with pytest.raises(ConfigError, match="partition must be in 0..num_partitions-1"):
        _config({"num_partitions": 2, "partition": 2}, "coco")


def test_kedro_partitions_then_vlmo_merge_manifests(kedro_project: Path, tmp_path: Path):
    """Two real `kedro run`s (one per partition), then the console script, as on two machines and a head node."""
    generate_demo_world(kedro_project / "data" / "01_raw", n_images=8, show_progress=False)
    primary = kedro_project / "data" / "03_primary"
    for index in range(2):
        params = f"ingest.num_partitions=2,ingest.partition={index},ingest.workers=0"
        run = subprocess.run(
            [str(KEDRO), "run", "--pipeline=ingest_coco", f"--params={params}"],
            cwd=kedro_project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert f"[ingest coco part {index} of 2] rows:" in run.stdout + run.stderr
        assert (primary / f"coco.part-{index}-of-2" / "manifest.json").is_file()
        assert not (primary / "coco").exists()  # the catalog's folder is left alone until the merge

    def vlmo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VLMO), *args], cwd=kedro_project, capture_output=True, text=True, timeout=120)

    refused = vlmo("merge-manifests", "data/03_primary/coco", "data/03_primary/coco.part-1-of-2")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "vlmo merge-manifests: error: data/03_primary/coco: 1 of 2 parts missing: data/03_primary/coco.part-0-of-2 "
        "(found parts [1])\n"
    )
    merged = vlmo("merge-manifests", "data/03_primary/coco")
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.startswith("merged 2 parts into data/03_primary/coco: coco train=8, restval=1, val=2, test=2")
    assert vlmo("merge-manifests", "data/03_primary/coco").stdout.startswith("up to date: data/03_primary/coco")
    assert vlmo("verify", "data/03_primary/coco").returncode == 0

    single = tmp_path / "single"
    ingest_dataset(
        "coco", kedro_project / "data" / "01_raw" / "coco", single, IngestConfig(workers=0), show_progress=False
    )
    assert _rows(primary / "coco") == _rows(single)
