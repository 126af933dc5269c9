"""VQA val carved into trainable_val + rest_val at ingest time (spec §5.3, §6; ingest `vqav2_rest_val_images`).

The official writer trains on train + trainable_val (val minus 1,000 images) and validates on rest_val (those 1,000
images). These tests ingest a small real-format VQA tree twice, once with val whole and once carved, and compare
the Arrow output row for row.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from vlmo_pipeline.data.arrow_io import read_rejects, read_split, verify_dataset
from vlmo_pipeline.data.datasets import VQADataset
from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.data.raw.records import RawLayoutError
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.models.transforms import build_eval_transform

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

VAL_IMAGES = list(range(100, 114))  # 14 val images ...
NO_ROW_IMAGE = 113  # ... of which this one has only an over-long question: it yields no row
UNANSWERABLE_IMAGE = 105  # only an answer outside the vocabulary: val keeps it with empty labels, and the carve
# leaves it in trainable_val (the official val table drops such questions before its last 1,000 rows are cut)
REST_VAL = 4


def _tree(tmp_path: Path) -> Path:
    """VQA v2 layout: train2014 (2 images) + val2014 (14 images), questions, annotations and COCO images."""
    coco = tmp_path / "coco"
    ann = raw_trees.vqa_annotation
    train_questions = [(10, 1, "What colour?"), (11, 1, "Is it?"), (20, 2, "Is it not?")]
    train_annotations = [ann(10, 1, ["red"] * 10), ann(11, 1, ["yes"] * 10), ann(20, 2, ["no"] * 10)]
    val_questions, val_annotations = [], []
    for index, image_id in enumerate(VAL_IMAGES):
        first, second = image_id * 10, image_id * 10 + 1
        if image_id == NO_ROW_IMAGE:
            val_questions.append((first, image_id, "why " * 400))  # longer than max_caption_chars
            val_annotations.append(ann(first, image_id, ["yes"] * 10))
        elif image_id == UNANSWERABLE_IMAGE:
            val_questions.append((first, image_id, "What is odd?"))
            val_annotations.append(ann(first, image_id, ["peculiar"] * 10))
        else:
            val_questions += [(first, image_id, "What colour?"), (second, image_id, "Is it?")]
            val_annotations += [
                ann(first, image_id, ["red"] * 6 + ["blue"] * 4, major="red"),
                ann(second, image_id, ["yes" if index % 2 else "no"] * 10),
            ]
    for subset, image_ids in (("train2014", [1, 2]), ("val2014", VAL_IMAGES)):
        for offset, image_id in enumerate(image_ids):
            raw_trees.write(
                coco / subset / f"COCO_{subset}_{image_id:012d}.jpg",
                raw_trees.image_bytes((20 + offset, 16), (offset * 17 % 256, 80, 40)),
            )
    root = tmp_path / "vqav2"
    raw_trees.vqa_files(root, "train2014", train_questions, train_annotations)
    raw_trees.vqa_files(root, "val2014", val_questions, val_annotations)
    return root


def _ingest(root: Path, out: Path, **config) -> dict:
    settings = {"workers": 0, "min_answer_count": 2, "max_caption_chars": 500, **config}
    return ingest_dataset("vqav2", root, out, IngestConfig(**settings), show_progress=False)


def _by_image(out: Path, split: str) -> dict[int, dict]:
    return {row["image_id"]: row for row in read_split(out, split).to_pylist()}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _tree(tmp_path)


def test_carve_is_a_disjoint_deterministic_cover_of_val(tree: Path, tmp_path: Path):
    whole = _ingest(tree, tmp_path / "whole")
    assert whole["splits"] == {"train": 2, "val": len(VAL_IMAGES) - 1}
    val = _by_image(tmp_path / "whole", "val")
    assert sorted(val) == [i for i in VAL_IMAGES if i != NO_ROW_IMAGE]
    assert val[UNANSWERABLE_IMAGE]["answer_labels"] == [[]]  # val keeps it (training drops it when loading)

    carved = _ingest(tree, tmp_path / "carved", vqav2_rest_val_images=REST_VAL, vqav2_rest_val_seed=7)
    out = tmp_path / "carved"
    assert verify_dataset(out) == []
    assert carved["splits"] == {"train": 2, "trainable_val": len(val) - REST_VAL, "rest_val": REST_VAL}
    assert not list(out.glob("val-*.arrow"))  # no val split beside its two halves
    assert carved["info"]["rest_val_images"] == REST_VAL and carved["info"]["rest_val_seed"] == 7
    assert carved["parameters"]["vqav2_rest_val_images"] == REST_VAL
    trainable, rest = _by_image(out, "trainable_val"), _by_image(out, "rest_val")
    assert not set(trainable) & set(rest)  # disjoint
    assert sorted([*trainable, *rest]) == sorted(val)  # together exactly val's images
    # ... with exactly val's rows: same questions, answers, labels and image bytes (only `split` differs)
    for image_id, row in {**trainable, **rest}.items():
        assert row["split"] == ("rest_val" if image_id in rest else "trainable_val")
        assert {**row, "split": "val"} == val[image_id]
    question_ids = [q for row in [*trainable.values(), *rest.values()] for q in row["question_id"]]
    assert sorted(question_ids) == sorted(q for row in val.values() for q in row["question_id"])
    # the choice: a seeded sample of the sorted ids of the val images with an answerable question
    answerable = sorted(i for i in val if i != UNANSWERABLE_IMAGE)
    assert set(rest) == set(random.Random(7).sample(answerable, REST_VAL)) and UNANSWERABLE_IMAGE in trainable
    # train and the answer vocabulary (train + val annotations) are untouched by the carve
    assert _by_image(out, "train") == _by_image(tmp_path / "whole", "train")
    assert (out / "answer_vocab.json").read_bytes() == (tmp_path / "whole" / "answer_vocab.json").read_bytes()
    assert [r["reason"] for r in read_rejects(out)] == [r["reason"] for r in read_rejects(tmp_path / "whole")]

    # deterministic: the same seed gives byte-identical shards; another seed another choice
    again = _ingest(tree, tmp_path / "again", vqav2_rest_val_images=REST_VAL, vqav2_rest_val_seed=7)
    assert [(s["file"], s["sha256"]) for s in again["shards"]] == [(s["file"], s["sha256"]) for s in carved["shards"]]
    other_choices = {frozenset(_by_image(_carve(tree, tmp_path, seed), "rest_val")) for seed in (0, 1, 2)}
    assert len(other_choices | {frozenset(rest)}) > 1


def _carve(tree: Path, tmp_path: Path, seed: int) -> Path:
    out = tmp_path / f"seed{seed}"
    _ingest(tree, out, vqav2_rest_val_images=REST_VAL, vqav2_rest_val_seed=seed)
    return out


def test_carve_refuses_what_it_cannot_do(tree: Path, tmp_path: Path):
    out = tmp_path / "out"
    answerable = len(VAL_IMAGES) - 2
    with pytest.raises(ValueError, match=f"leaves nothing for trainable_val: val has {answerable} images"):
        _ingest(tree, out, vqav2_rest_val_images=answerable)
    assert not out.exists()  # refused before anything was written
    with pytest.raises(ValueError, match="vqav2_rest_val_images must be >= 0"):
        IngestConfig(vqav2_rest_val_images=-1)
    (tree / "v2_OpenEnded_mscoco_val2014_questions.json").unlink()
    (tree / "v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(RawLayoutError, match="no val questions file"):
        _ingest(tree, out, vqav2_rest_val_images=1)


def test_training_reads_train_plus_trainable_val_and_validates_on_rest_val(tree: Path, tmp_path: Path, bert_vocab):
    """The paper's VQA splits through the training dataset class: no val question is counted twice."""
    out = tmp_path / "carved"
    _ingest(tree, out, vqav2_rest_val_images=REST_VAL)
    tokenizer = VLMoTokenizer(bert_vocab, lowercase=True, max_len=16)
    options = {"transform": build_eval_transform(16), "tokenizer": tokenizer, "max_text_len": 16}
    train = VQADataset([(out, "train"), (out, "trainable_val")], drop_unanswerable=True, **options)
    rest_val = VQADataset((out, "rest_val"), drop_unanswerable=True, **options)
    answerable = {
        image_id: 0 if image_id == UNANSWERABLE_IMAGE else 2 for image_id in VAL_IMAGES if image_id != NO_ROW_IMAGE
    }
    rest_ids = set(_by_image(out, "rest_val"))
    assert len(rest_val) == 2 * REST_VAL  # every rest_val image is scored (two answerable questions each)
    assert len(rest_val) == sum(answerable[i] for i in rest_ids)
    assert len(train) == 3 + sum(n for i, n in answerable.items() if i not in rest_ids)
    train_questions = {train[i]["question_id"] for i in range(len(train))}
    rest_questions = {rest_val[i]["question_id"] for i in range(len(rest_val))}
    assert not train_questions & rest_questions


def test_carve_of_the_demo_world(tmp_path: Path):
    """The project's demo-world generator → ingest with the carve: the same partition on its VQA val."""
    from vlmo_pipeline.data.demo import generate_demo_world

    generate_demo_world(tmp_path / "raw", n_images=16, show_progress=False)
    raw = tmp_path / "raw" / "vqav2"
    whole = _by_image(_ingested(raw, tmp_path / "whole", 0), "val")
    out = _ingested(raw, tmp_path / "carved", 3)
    trainable, rest = _by_image(out, "trainable_val"), _by_image(out, "rest_val")
    assert len(rest) == 3 and len(trainable) == len(whole) - 3 > 0
    assert not set(trainable) & set(rest) and sorted([*trainable, *rest]) == sorted(whole)
    assert all({**row, "split": "val"} == whole[image_id] for image_id, row in {**trainable, **rest}.items())


def _ingested(raw: Path, out: Path, rest_val_images: int) -> Path:
    config = IngestConfig(workers=0, min_answer_count=1, vqav2_rest_val_images=rest_val_images)
    ingest_dataset("vqav2", raw, out, config, image_root=raw.parent / "coco", show_progress=False)
    return out
