"""Arrow-backed Datasets over shards written here by hand with pyarrow (schema: docs/data_layout.md)."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vlmo_pipeline.data.arrow_io import MANIFEST_NAME, SCHEMA_VERSION, sha256_file
from vlmo_pipeline.data.collate import WholeWordMaskCollator, collate
from vlmo_pipeline.data.datasets import (
    CorruptSampleError,
    ImageOnlyDataset,
    ImageTextDataset,
    NLVR2Dataset,
    TextDataset,
    VQADataset,
    load_answer_vocab,
)
from vlmo_pipeline.data.shards import list_shards
from vlmo_pipeline.models.tokenizer import VLMoTokenizer, train_wordpiece_vocab
from vlmo_pipeline.models.transforms import build_eval_transform

IMAGE_SIZE = 8
CAPTION_SCHEMA = pa.schema(
    [("image", pa.binary()), ("caption", pa.list_(pa.string())), ("image_id", pa.string()), ("split", pa.string())]
)
VQA_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.list_(pa.string()))),
        ("answer_labels", pa.list_(pa.list_(pa.int64()))),
        ("answer_scores", pa.list_(pa.list_(pa.float64()))),
        ("image_id", pa.int64()),
        ("question_id", pa.list_(pa.int64())),
        ("answer_type", pa.list_(pa.string())),
        ("split", pa.string()),
    ]
)
NLVR2_SCHEMA = pa.schema(
    [
        ("image_0", pa.binary()),
        ("image_1", pa.binary()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("identifier", pa.string()),
        ("split", pa.string()),
    ]
)
TEXT_SCHEMA = pa.schema([("caption", pa.list_(pa.string())), ("source", pa.string()), ("split", pa.string())])


def png(gray: int) -> bytes:
    """A tiny uniform image whose gray level identifies it after the eval transform."""
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), color=(gray, gray, gray)).save(buffer, format="PNG")
    return buffer.getvalue()


def gray_of(tensor: torch.Tensor) -> int:
    return round((float(tensor.mean()) + 1.0) / 2.0 * 255.0)


def write_shard(path: Path, schema: pa.Schema, rows: list[dict], batch_rows: int = 2) -> Path:
    """Arrow IPC file with several record batches (the writer's layout), like the ingest shards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.ipc.new_file(str(path), schema) as writer:
        for start in range(0, len(rows), batch_rows):
            writer.write_batch(pa.RecordBatch.from_pylist(rows[start : start + batch_rows], schema=schema))
    add_to_manifest(path, len(rows))
    return path


def add_to_manifest(path: Path, rows: int) -> None:
    """List ``path`` in its directory's manifest.json (the Datasets read shards only through it)."""
    manifest_path = path.parent / MANIFEST_NAME
    manifest = (
        json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest_path.exists()
        else {"schema_version": SCHEMA_VERSION, "dataset": path.parent.name, "splits": {}, "shards": [], "rejects": 0}
    )
    split = path.name.split("-")[0]
    manifest["shards"] = [s for s in manifest["shards"] if s["file"] != path.name]
    manifest["shards"].append(
        {"file": path.name, "split": split, "rows": rows, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    )
    manifest["splits"] = {}
    for shard in manifest["shards"]:
        manifest["splits"][shard["split"]] = manifest["splits"].get(shard["split"], 0) + shard["rows"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def caption_rows(grays_and_captions: list[tuple[int, list[str]]], split: str, prefix: str) -> list[dict]:
    return [
        {"image": png(gray), "caption": captions, "image_id": f"{prefix}_{gray}.jpg", "split": split}
        for gray, captions in grays_and_captions
    ]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> VLMoTokenizer:
    corpus = [
        "a red cube",
        "two blue spheres",
        "a green cylinder left of a cube",
        "is the cube red",
        "how many spheres",
        "the left image has more cubes",
        "one",
        "two",
        "three",
    ]
    vocab = train_wordpiece_vocab(corpus * 2, tmp_path_factory.mktemp("vocab") / "vocab.txt", vocab_size=150)
    return VLMoTokenizer(vocab, max_len=40)


@pytest.fixture()
def primary(tmp_path) -> Path:
    """A data/03_primary-like root with coco (2 train shards + test), vg, text, vqav2 and nlvr2."""
    root = tmp_path / "03_primary"
    write_shard(
        root / "coco" / "train-00000.arrow",
        CAPTION_SCHEMA,
        caption_rows([(10, ["a red cube", "red cube"]), (20, ["two blue spheres"]), (30, [])], "train", "c"),
    )
    write_shard(
        root / "coco" / "train-00001.arrow",
        CAPTION_SCHEMA,
        caption_rows([(40, ["a green cylinder", "cylinder", "green"])], "train", "c"),
    )
    write_shard(root / "coco" / "test-00000.arrow", CAPTION_SCHEMA, caption_rows([(50, ["one"])], "test", "c"))
    (root / "coco" / ".train-00002.arrow.tmp").write_bytes(b"half-written shard of a killed run")
    write_shard(
        root / "vg" / "train-00000.arrow",
        CAPTION_SCHEMA,
        caption_rows([(60, ["left of a cube", "a cube"])], "train", "v"),
    )
    write_shard(
        root / "text" / "train-00000.arrow",
        TEXT_SCHEMA,
        [{"caption": [s], "source": "wiki.train.raw", "split": "train"} for s in ["one two", "three"]],
    )
    write_shard(
        root / "vqav2" / "train-00000.arrow",
        VQA_SCHEMA,
        [
            {
                "image": png(70),
                "questions": ["is the cube red", "how many spheres"],
                "answers": [["yes"] * 10, ["2"] * 7 + ["3"] * 3],
                "answer_labels": [[0], [2, 3]],
                "answer_scores": [[1.0], [1.0, 0.9]],
                "image_id": 7,
                "question_id": [70, 71],
                "answer_type": ["yes/no", "number"],
                "split": "train",
            },
            {
                "image": png(80),
                "questions": ["what colour"],
                "answers": [["purple"] * 10],
                "answer_labels": [[]],
                "answer_scores": [[]],
                "image_id": 8,
                "question_id": [80],
                "answer_type": ["other"],
                "split": "train",
            },
        ],
    )
    write_shard(
        root / "vqav2" / "test-00000.arrow",
        VQA_SCHEMA,
        [
            {
                "image": png(90),
                "questions": ["is the cube red"],
                "answers": [],
                "answer_labels": [],
                "answer_scores": [],
                "image_id": 9,
                "question_id": [90],
                "answer_type": [],
                "split": "test",
            },
        ],
    )
    (root / "vqav2" / "answer_vocab.json").write_text(json.dumps(["yes", "no", "2", "3"]), encoding="utf-8")
    write_shard(
        root / "nlvr2" / "dev-00000.arrow",
        NLVR2_SCHEMA,
        [
            {
                "image_0": png(100),
                "image_1": png(110),
                "questions": ["the left image has more cubes", "two"],
                "answers": ["True", "False"],
                "identifier": "dev-1-0",
                "split": "dev",
            },
            {
                "image_0": png(120),
                "image_1": png(130),
                "questions": ["three"],
                "answers": ["False"],
                "identifier": "dev-2-1",
                "split": "dev",
            },
        ],
    )
    return root


def test_list_shards_sorted_and_clear_errors(primary):
    assert [p.name for p in list_shards(primary, "coco", "train")] == ["train-00000.arrow", "train-00001.arrow"]
    with pytest.raises(FileNotFoundError) as error:
        list_shards(primary, "coco", "val")
    message = str(error.value)
    assert str(primary / "coco") in message and "val-NNNNN.arrow" in message and "test, train" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_shards(primary, "f30k", "train")


def test_image_text_index_and_items(primary, tokenizer):
    dataset = ImageTextDataset(
        (primary, "coco", "train"), transform=build_eval_transform(IMAGE_SIZE), tokenizer=tokenizer
    )
    assert isinstance(dataset.row_of_sample, np.ndarray) and dataset.row_of_sample.dtype == np.int64
    assert isinstance(dataset.caption_of_sample, np.ndarray) and dataset.caption_of_sample.dtype == np.int32
    # rows: 0 (2 captions), 1 (1), 2 (0 captions: no sample), 3 (3) — the second shard continues the row count
    assert dataset.row_of_sample.tolist() == [0, 0, 1, 3, 3, 3]
    assert dataset.caption_of_sample.tolist() == [0, 1, 0, 0, 1, 2]
    assert len(dataset) == 6
    item = dataset[4]
    assert item["caption"] == "cylinder" and item["image_index"] == 3 and item["caption_index"] == 1
    assert item["image_id"] == "c_40.jpg"
    assert item["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and gray_of(item["image"]) == 40
    expected = tokenizer.encode(["cylinder"])
    for key in ("text_ids", "text_masks", "word_ids", "special_tokens_mask"):
        assert item[key].dtype == torch.long and item[key].shape == (40,)
        assert torch.equal(item[key], expected[key][0])
    assert gray_of(dataset[1]["image"]) == 10 and dataset[1]["caption"] == "red cube"


def test_image_only_text_only_and_image_only_dataset(primary, tokenizer):
    transform = build_eval_transform(IMAGE_SIZE)
    images = ImageTextDataset((primary, "coco", "train"), transform=transform, image_only=True)
    assert len(images) == 4  # the caption-less row still is an image
    assert [gray_of(images[i]["image"]) for i in range(4)] == [10, 20, 30, 40]
    assert "text_ids" not in images[0] and images[2]["image_index"] == 2
    texts = ImageTextDataset(primary / "coco", split="train", tokenizer=tokenizer, text_only=True)
    assert len(texts) == 6 and "image" not in texts[0] and texts[3]["image_index"] == 3
    stage1 = ImageOnlyDataset([(primary, "coco", "train"), (primary, "vg", "train")], transform=transform)
    assert len(stage1) == 5 and gray_of(stage1[4]["image"]) == 60


def test_concatenated_datasets_share_one_index(primary, tokenizer):
    dataset = ImageTextDataset(
        [(primary, "coco", "train"), (primary, "coco", "test"), (primary, "vg", "train")],
        transform=build_eval_transform(IMAGE_SIZE),
        tokenizer=tokenizer,
    )
    assert len(dataset) == 6 + 1 + 2
    assert dataset.row_of_sample.tolist()[6:] == [4, 5, 5]
    last = dataset[8]
    assert last["caption"] == "a cube" and last["image_index"] == 5 and gray_of(last["image"]) == 60
    assert dataset[6]["caption"] == "one" and dataset[6]["image_id"] == "c_50.jpg"


def test_text_dataset(primary, tokenizer):
    dataset = TextDataset((primary, "text", "train"), tokenizer=tokenizer, max_text_len=6)
    assert len(dataset) == 2
    item = dataset[0]
    assert item["caption"] == "one two" and item["text_ids"].shape == (6,)
    assert item["text_masks"].tolist() == [1, 1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="column"):  # a text table has no image column
        ImageTextDataset((primary, "text", "train"), transform=build_eval_transform(IMAGE_SIZE), tokenizer=tokenizer)


def test_vqa_targets_and_test_split(primary, tokenizer):
    transform = build_eval_transform(IMAGE_SIZE)
    assert load_answer_vocab(primary / "vqav2") == ["yes", "no", "2", "3"]
    dataset = VQADataset((primary, "vqav2", "train"), transform=transform, tokenizer=tokenizer)
    assert dataset.num_labels == 4 and len(dataset) == 3
    item = dataset[1]
    assert item["question"] == "how many spheres" and item["question_id"] == 71
    assert item["vqa_targets"].dtype == torch.float32
    assert item["vqa_targets"].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.9])
    assert item["answer_labels"] == [2, 3] and item["answer_scores"] == pytest.approx([1.0, 0.9])
    assert item["answers"] == ["2"] * 7 + ["3"] * 3 and item["answer_type"] == "number"
    assert item["image_id"] == 7 and item["image_index"] == 0 and gray_of(item["image"]) == 70
    assert torch.equal(item["text_ids"], tokenizer.encode(["how many spheres"])["text_ids"][0])
    assert dataset[2]["vqa_targets"].sum() == 0 and dataset[2]["answer_labels"] == []

    answerable = VQADataset(
        (primary, "vqav2", "train"), transform=transform, tokenizer=tokenizer, drop_unanswerable=True
    )
    assert [answerable[i]["question_id"] for i in range(len(answerable))] == [70, 71]

    test = VQADataset((primary, "vqav2", "test"), transform=transform, tokenizer=tokenizer)
    test_item = test[0]
    assert test_item["question_id"] == 90 and test_item["vqa_targets"].sum() == 0
    assert test_item["answers"] == [] and test_item["answer_type"] == ""

    batch = collate([dataset[0], dataset[1]])
    assert batch["vqa_targets"].shape == (2, 4) and batch["question_id"].tolist() == [70, 71]
    assert batch["answer_labels"] == [[0], [2, 3]]


def test_vqa_rejects_inconsistent_rows(tmp_path, tokenizer):
    write_shard(
        tmp_path / "vqav2" / "train-00000.arrow",
        VQA_SCHEMA,
        [
            {
                "image": png(1),
                "questions": ["a", "b"],
                "answers": [],
                "answer_labels": [],
                "answer_scores": [],
                "image_id": 1,
                "question_id": [5],
                "answer_type": [],
                "split": "train",
            },
        ],
    )
    (tmp_path / "vqav2" / "answer_vocab.json").write_text(json.dumps({"yes": 0, "no": 1}), encoding="utf-8")
    with pytest.raises(CorruptSampleError, match=r"train-00000.arrow row 0: question_id has 1 entries for 2"):
        VQADataset((tmp_path, "vqav2", "train"), transform=build_eval_transform(4), tokenizer=tokenizer)


def test_nlvr2_items(primary, tokenizer):
    dataset = NLVR2Dataset((primary, "nlvr2", "dev"), transform=build_eval_transform(IMAGE_SIZE), tokenizer=tokenizer)
    assert len(dataset) == 3
    labels = [dataset[i]["label"] for i in range(3)]
    assert labels == [1, 0, 0]
    item = dataset[2]
    assert item["sentence"] == "three" and item["identifier"] == "dev-2-1" and item["image_index"] == 1
    assert gray_of(item["image_0"]) == 120 and gray_of(item["image_1"]) == 130
    batch = collate([dataset[0], dataset[1]])
    assert batch["image_0"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [1, 0]


def test_bad_image_raises_located_error(tmp_path, tokenizer):
    rows = caption_rows([(10, ["a red cube"])], "train", "ok")
    rows.append({"image": png(20)[:40], "caption": ["two blue spheres"], "image_id": "broken_1.jpg", "split": "train"})
    rows.append({"image": b"", "caption": ["one"], "image_id": "empty_2.jpg", "split": "train"})
    shard = write_shard(tmp_path / "coco" / "train-00000.arrow", CAPTION_SCHEMA, rows)
    dataset = ImageTextDataset((tmp_path, "coco", "train"), transform=build_eval_transform(4), tokenizer=tokenizer)
    assert gray_of(dataset[0]["image"]) == 10
    with pytest.raises(CorruptSampleError) as error:
        dataset[1]
    assert f"{shard} row 1" in str(error.value) and "broken_1.jpg" in str(error.value)
    with pytest.raises(CorruptSampleError, match=r"row 2 \(image_id 'empty_2.jpg'.*empty"):
        dataset[2]


def test_not_an_arrow_file(tmp_path, tokenizer):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "train-00000.arrow").write_bytes(b"garbage")
    add_to_manifest(tmp_path / "coco" / "train-00000.arrow", 1)
    with pytest.raises(ValueError, match="not a readable Arrow IPC file"):
        ImageTextDataset((tmp_path, "coco", "train"), transform=build_eval_transform(4), tokenizer=tokenizer)


def test_pickle_and_dataloader_workers(primary, tokenizer):
    dataset = ImageTextDataset(
        (primary, "coco", "train"), transform=build_eval_transform(IMAGE_SIZE), tokenizer=tokenizer
    )
    dataset[0]  # open the memory maps in this process first
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[5]["caption"] == "green" and np.array_equal(clone.row_of_sample, dataset.row_of_sample)

    collator = WholeWordMaskCollator(tokenizer, seed=0)
    loader = DataLoader(
        dataset,
        batch_size=2,
        num_workers=2,
        collate_fn=collator,
        multiprocessing_context="fork",
        persistent_workers=False,
    )
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [2, 2, 2]
    image_indices = torch.cat([b["image_index"] for b in batches]).tolist()
    assert image_indices == dataset.row_of_sample.tolist()
    assert [c for b in batches for c in b["caption"]] == [
        "a red cube",
        "red cube",
        "two blue spheres",
        "a green cylinder",
        "cylinder",
        "green",
    ]
    assert all(b["text_ids_mlm"].shape == b["text_ids"].shape for b in batches)


def test_sharded_table_bounds_open_shards(tmp_path):
    from vlmo_pipeline.data.shards import ShardedArrowTable

    paths = [
        write_shard(
            tmp_path / "coco" / f"train-{k:05d}.arrow",
            CAPTION_SCHEMA,
            caption_rows([(10 * k + j, [f"c{k}{j}"]) for j in range(3)], "train", "s"),
            batch_rows=2,
        )
        for k in range(4)
    ]
    table = ShardedArrowTable(paths, required_columns=["caption"], max_open_shards=2)
    assert table.num_rows == 12 and table.open_shard_count() <= 2
    assert [table.list_item(row, "caption", 0) for row in range(12)] == [f"c{k}{j}" for k in range(4) for j in range(3)]
    assert table.open_shard_count() <= 2
    assert table.where(5) == f"{paths[1]} row 2"
    assert table.has_column("image_id") and not table.has_column("questions")
