"""Raw trees → Arrow shards → read back equal, for every dataset family (vlmo_pipeline.data.ingest)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from vlmo_pipeline.data.arrow_io import read_rejects, read_split, sha256_file, verify_dataset
from vlmo_pipeline.data.ingest import DATASETS, IngestConfig, ingest_dataset
from vlmo_pipeline.data.raw.records import RawLayoutError

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

SAMPLES = raw_trees.SAMPLES
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"shared data samples not found at {SAMPLES}")
# max_reject_rate 1.0: the real samples list more images than the excerpt ships (rejected as missing_file).
CONFIG = IngestConfig(workers=0, min_answer_count=1, max_reject_rate=1.0)


def ingest(name, raw, out, config=CONFIG, **kwargs):
    return ingest_dataset(name, raw, out, config, show_progress=False, **kwargs)


def check_manifest(out: Path, manifest: dict) -> None:
    """Row counts add up, every listed shard exists with the recorded sha256, rejects count matches the log."""
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    for split, rows in manifest["splits"].items():
        assert sum(s["rows"] for s in manifest["shards"] if s["split"] == split) == rows
        if rows:
            assert read_split(out, split).num_rows == rows
    for shard in manifest["shards"]:
        assert sha256_file(out / shard["file"]) == shard["sha256"]
        assert (out / shard["file"]).stat().st_size == shard["bytes"]
    assert sorted(p.name for p in out.glob("*.arrow")) == sorted(s["file"] for s in manifest["shards"])
    assert len(read_rejects(out)) == manifest["rejects"] == sum(manifest["rejects_by_reason"].values())
    assert verify_dataset(out) == []


def test_dataset_names():
    assert DATASETS == ("coco", "f30k", "vg", "cc3m", "sbu", "vqav2", "nlvr2", "text")
    with pytest.raises(ValueError, match="unknown dataset"):
        ingest("imagenet", ".", ".")


def test_coco_karpathy_round_trip(tmp_path, capsys):
    specs = [
        ("train", "train2014", 9, ["a red square", "a square that is red"]),
        ("restval", "val2014", 3, ["two circles"]),
        ("val", "val2014", 5, ["a blue triangle"]),
        ("test", "val2014", 1, ["green dots", "dots", "many green dots"]),
        ("train", "train2014", 2, ["a small house"]),
    ]
    written = raw_trees.coco_tree(tmp_path / "coco", specs)
    out = tmp_path / "out"
    manifest = ingest("coco", tmp_path / "coco", out)
    check_manifest(out, manifest)
    assert manifest["splits"] == {"train": 2, "restval": 1, "val": 1, "test": 1}
    train = read_split(out, "train").to_pylist()
    # file order (deterministic), original bytes, all captions
    assert [r["image_id"] for r in train] == ["COCO_train2014_000000000009.jpg", "COCO_train2014_000000000002.jpg"]
    for split, subset, cocoid, captions in specs:
        name = f"COCO_{subset}_{cocoid:012d}.jpg"
        row = next(r for r in read_split(out, split).to_pylist() if r["image_id"] == name)
        assert row == {"image": written[name], "caption": captions, "image_id": name, "split": split}
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "[ingest coco] rows: train=2, restval=1, val=1, test=1; 0 rejects; 4 shards"
    )


def test_rerun_rewrites_cleanly_and_parallel_run_is_identical(tmp_path):
    raw_trees.coco_tree(tmp_path / "coco", [("train", "train2014", i, [f"caption {i}"]) for i in range(1, 12)])
    out = tmp_path / "out"
    first = ingest("coco", tmp_path / "coco", out, IngestConfig(workers=0, shard_rows=2))
    assert len(first["shards"]) == 6
    second = ingest(
        "coco", tmp_path / "coco", out, IngestConfig(workers=2, shard_rows=5, chunk_size=2, max_inflight_chunks=2)
    )
    check_manifest(out, second)
    assert [s["rows"] for s in second["shards"]] == [5, 5, 1]  # the old 6 shards are gone
    serial = ingest("coco", tmp_path / "coco", tmp_path / "serial", IngestConfig(workers=0, shard_rows=5))
    assert [s["sha256"] for s in serial["shards"]] == [s["sha256"] for s in second["shards"]]


def test_layout_error_leaves_previous_output_untouched(tmp_path):
    raw_trees.coco_tree(tmp_path / "coco", [("train", "train2014", 1, ["a cat"])])
    out = tmp_path / "out"
    manifest = ingest("coco", tmp_path / "coco", out)
    (tmp_path / "coco" / "karpathy" / "dataset_coco.json").write_text('[{"filename": "x"}]')
    with pytest.raises(RawLayoutError, match=r"dataset_coco\.json.*Karpathy split file"):
        ingest("coco", tmp_path / "coco", out)
    check_manifest(out, manifest)


def test_image_reencode_to_max_side(tmp_path):
    root = tmp_path / "coco"
    big = raw_trees.image_bytes((300, 120), fmt="PNG")
    small = raw_trees.image_bytes((40, 30))
    raw_trees.write(root / "train2014" / "big.png", big)
    raw_trees.write(root / "train2014" / "small.jpg", small)
    raw_trees.write_json(
        root / "karpathy" / "dataset_coco.json",
        {
            "images": [
                raw_trees.karpathy_entry("big.png", "train", ["big"], filepath="train2014"),
                raw_trees.karpathy_entry("small.jpg", "train", ["small"], filepath="train2014"),
            ]
        },
    )
    out = tmp_path / "out"
    ingest("coco", root, out, IngestConfig(workers=0, max_image_side=64, jpeg_quality=80))
    rows = read_split(out, "train").to_pylist()
    resized = Image.open(io.BytesIO(rows[0]["image"]))
    assert resized.format == "JPEG" and resized.size == (64, 26)
    assert rows[1]["image"] == small  # already within the limit: original bytes kept


def test_f30k_round_trip(tmp_path):
    root = tmp_path / "f30k"
    images = {f"{n}.jpg": raw_trees.image_bytes((20 + n, 20)) for n in range(3)}
    for name, data in images.items():
        raw_trees.write(root / "flickr30k-images" / name, data)
    splits = ["train", "val", "test"]
    raw_trees.write_json(
        root / "karpathy" / "dataset_flickr30k.json",
        {
            "images": [
                raw_trees.karpathy_entry(name, split, [f"caption of {name}"] * 5)
                for (name, split) in zip(images, splits)
            ],
            "dataset": "flickr30k",
        },
    )
    out = tmp_path / "out"
    manifest = ingest("f30k", root, out)
    check_manifest(out, manifest)
    for (name, data), split in zip(images.items(), splits):
        assert read_split(out, split).to_pylist() == [
            {"image": data, "caption": [f"caption of {name}"] * 5, "image_id": name, "split": split}
        ]


@needs_samples
def test_real_samples_round_trip(tmp_path):
    coco = ingest("coco", SAMPLES / "coco", tmp_path / "coco")
    check_manifest(tmp_path / "coco", coco)
    assert coco["splits"] == {"val": 3} and coco["rejects_by_reason"] == {"missing_file": 27}
    for row in read_split(tmp_path / "coco", "val").to_pylist():
        assert row["image"] == (SAMPLES / "coco" / "val2014" / row["image_id"]).read_bytes()

    vg = ingest("vg", SAMPLES / "vg", tmp_path / "vg")
    check_manifest(tmp_path / "vg", vg)
    rows = read_split(tmp_path / "vg", "train").to_pylist()
    assert [r["image"] for r in rows] == [
        (SAMPLES / "vg/VG_100K_2/1.jpg").read_bytes(),
        (SAMPLES / "vg/VG_100K/2.jpg").read_bytes(),
    ]

    nlvr2 = ingest(
        "nlvr2",
        SAMPLES / "nlvr2",
        tmp_path / "nlvr2",
        reader_options={"files": {"dev": SAMPLES / "nlvr2" / "tiny-dev.json"}},
    )
    check_manifest(tmp_path / "nlvr2", nlvr2)
    for row in read_split(tmp_path / "nlvr2", "dev").to_pylist():
        folder = SAMPLES / "nlvr2" / "images" / "dev" / "850"
        assert row["image_0"] == (folder / f"{row['identifier']}-img0.png").read_bytes()
        assert row["image_1"] == (folder / f"{row['identifier']}-img1.png").read_bytes()

    text = ingest("text", SAMPLES / "text", tmp_path / "text")
    check_manifest(tmp_path / "text", text)
    assert set(text["splits"]) == {"train", "val", "test"} and text["rejects"] == 0


@needs_samples
def test_vqav2_real_questions_with_written_annotations(tmp_path):
    questions = json.loads((SAMPLES / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    root = tmp_path / "vqav2"
    root.mkdir()
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(questions))
    answers = ["yes", "no", "2"]
    annotations = [
        raw_trees.vqa_annotation(q["question_id"], q["image_id"], [answers[i % 3]] * 6 + ["red"] * 4)
        for i, q in enumerate(questions["questions"])
    ]
    raw_trees.write_json(root / "v2_mscoco_val2014_annotations.json", {"annotations": annotations})
    out = tmp_path / "out"
    manifest = ingest(
        "vqav2",
        root,
        out,
        IngestConfig(workers=0, min_answer_count=2, max_reject_rate=1.0),
        image_root=SAMPLES / "vqav2",
    )
    check_manifest(out, manifest)
    rows = read_split(out, "val").to_pylist()
    assert [r["image_id"] for r in rows] == [262148, 393225]  # the two images present in the sample
    assert manifest["rejects_by_reason"] == {"missing_file": 3}
    vocab = json.loads((out / "answer_vocab.json").read_text())
    assert vocab == ["yes", "no", "2"]  # "red" is never the majority answer
    for row in rows:
        assert row["image"] == (SAMPLES / "vqav2/val2014" / f"COCO_val2014_{row['image_id']:012d}.jpg").read_bytes()
        for answer_list, labels, scores in zip(row["answers"], row["answer_labels"], row["answer_scores"]):
            assert labels == [vocab.index(answer_list[0])] and scores == [1.0]


def _vqa_tree(tmp_path: Path) -> Path:
    coco = tmp_path / "coco"  # the default image_root is <vqav2 root>/../coco
    for subset, image_id in [("train2014", 1), ("train2014", 2), ("val2014", 7)]:
        raw_trees.write(coco / subset / f"COCO_{subset}_{image_id:012d}.jpg", raw_trees.image_bytes())
    root = tmp_path / "vqav2"
    ann = raw_trees.vqa_annotation
    raw_trees.vqa_files(
        root,
        "train2014",
        [(10, 1, "What colour?"), (11, 1, "How many?"), (20, 2, "Is it?"), (21, 2, "Odd one?")],
        [
            ann(10, 1, ["red"] * 3 + ["Red"] * 2 + ["blue"] * 5, major="red"),
            ann(11, 1, ["two"] * 4 + ["2"] * 6, major="2", answer_type="number"),
            ann(20, 2, ["yes"] * 10, answer_type="yes/no"),
            ann(21, 2, ["weird"] * 10),
        ],
    )
    raw_trees.vqa_files(
        root,
        "val2014",
        [(70, 7, "What colour?"), (71, 7, "Is it?"), (72, 7, "Odd?")],
        [
            ann(70, 7, ["red"] * 1 + ["blue"] * 9, major="blue"),
            ann(71, 7, ["yes"] * 10, answer_type="yes/no"),
            ann(72, 7, ["strange"] * 10),
        ],
    )
    return root


def test_vqav2_soft_scores_and_vocab_order(tmp_path):
    root = _vqa_tree(tmp_path)
    out = tmp_path / "out"
    manifest = ingest("vqav2", root, out, IngestConfig(workers=0, min_answer_count=1))
    check_manifest(out, manifest)
    vocab = json.loads((out / "answer_vocab.json").read_text())
    assert vocab == ["red", "2", "yes", "weird", "blue", "strange"]  # first-seen order over train then val
    train = read_split(out, "train").to_pylist()
    assert [r["image_id"] for r in train] == [1, 2]
    first = train[0]
    assert first["questions"] == ["What colour?", "How many?"] and first["question_id"] == [10, 11]
    # raw answers are counted: "Red" and "two" are not vocabulary entries (spec §5.3)
    assert first["answer_labels"] == [[0, 4], [1]]
    assert first["answer_scores"] == [[0.9, 1.0], [1.0]]
    assert first["answer_type"] == ["other", "number"]
    assert first["answers"][1] == ["two"] * 4 + ["2"] * 6
    assert first["image"] == (tmp_path / "coco/train2014/COCO_train2014_000000000001.jpg").read_bytes()

    manifest = ingest("vqav2", root, out, IngestConfig(workers=0, min_answer_count=1, vqa_vocab_splits=["train"]))
    assert json.loads((out / "answer_vocab.json").read_text()) == ["red", "2", "yes", "weird"]
    assert manifest["parameters"]["vqa_vocab_splits"] == ["train"]
    val = read_split(out, "val").to_pylist()[0]
    assert val["answer_labels"] == [[0], [2], []] and val["answer_scores"] == [[0.3], [1.0], []]


def test_vqav2_min_count_drops_train_questions_but_keeps_val(tmp_path):
    root = _vqa_tree(tmp_path)
    out = tmp_path / "out"
    manifest = ingest("vqav2", root, out, IngestConfig(workers=0, min_answer_count=2))
    check_manifest(out, manifest)
    assert json.loads((out / "answer_vocab.json").read_text()) == ["yes"]
    assert manifest["splits"] == {"train": 1, "val": 1}
    train = read_split(out, "train").to_pylist()
    assert [(r["image_id"], r["question_id"]) for r in train] == [(2, [20])]  # image 1 lost all its questions
    assert sorted((r["record"], r["reason"]) for r in read_rejects(out)) == [
        ("question 10", "answer_not_in_vocab"),
        ("question 11", "answer_not_in_vocab"),
        ("question 21", "answer_not_in_vocab"),
    ]
    val = read_split(out, "val").to_pylist()[0]
    assert val["question_id"] == [70, 71, 72]
    assert val["answer_labels"] == [[], [0], []] and val["answer_scores"] == [[], [1.0], []]


def test_cc3m_both_img2dataset_layouts(tmp_path):
    root = tmp_path / "cc3m"
    train = [
        {"key": f"{i:09d}", "caption": f"train caption {i}", "image": raw_trees.image_bytes((10 + i, 10))}
        for i in range(5)
    ]
    val = [
        {"key": f"{i:09d}", "caption": f"val caption {i}", "image": raw_trees.image_bytes((10, 10 + i))}
        for i in range(4)
    ]
    val[2] = {"key": val[2]["key"], "caption": "x", "image": None, "status": "failed_to_download", "error": "HTTP 404"}
    raw_trees.img2dataset_output(root / "images_train", train, "files", per_shard=2)
    raw_trees.img2dataset_output(root / "images_val", val, "webdataset", per_shard=3)
    raw_trees.write(
        root / "Train_GCC-training.tsv", "".join(f"{s['caption']}\thttp://x/{i}\n" for i, s in enumerate(train))
    )
    out = tmp_path / "out"
    manifest = ingest("cc3m", root, out)
    check_manifest(out, manifest)
    assert manifest["splits"] == {"train": 5, "val": 3}
    assert manifest["info"]["annotation_lines"] == {"train": 5}
    assert read_split(out, "train").to_pylist() == [
        {"image": s["image"], "caption": [s["caption"]], "image_id": s["key"], "split": "train"} for s in train
    ]
    assert read_split(out, "val").to_pylist() == [
        {"image": s["image"], "caption": [s["caption"]], "image_id": s["key"], "split": "val"}
        for s in val
        if s.get("status") is None
    ]
    assert [(r["record"], r["reason"]) for r in read_rejects(out)] == [("000000002", "download_failed")]


def test_sbu_webdataset(tmp_path):
    root = tmp_path / "sbu"
    samples = [
        {"key": f"{i:09d}", "caption": f"sbu {i}", "image": raw_trees.image_bytes((12, 8 + i))} for i in range(3)
    ]
    raw_trees.img2dataset_output(root / "images", samples, "webdataset", per_shard=2)
    raw_trees.write_json(
        root / "sbu-captions-all.json",
        {"image_urls": ["u"] * 3, "user_ids": ["i"] * 3, "captions": [s["caption"] for s in samples]},
    )
    out = tmp_path / "out"
    manifest = ingest("sbu", root, out)
    check_manifest(out, manifest)
    assert manifest["info"] == {"annotation_entries": 3}
    assert [(r["image"], r["caption"]) for r in read_split(out, "train").to_pylist()] == [
        (s["image"], [s["caption"]]) for s in samples
    ]


def test_nlvr2_official_layouts(tmp_path):
    root = tmp_path / "nlvr2"
    images = {}
    for _split, pair, folder in [("train", "train-5-1", "images/train/3"), ("dev", "dev-2-0", "images/dev")]:
        for side in (0, 1):
            images[(pair, side)] = raw_trees.image_bytes((8 + side, 8), fmt="PNG")
            raw_trees.write(root / folder / f"{pair}-img{side}.png", images[(pair, side)])
    raw_trees.write(
        root / "train.json",
        "\n".join(
            [
                raw_trees.nlvr2_line("train-5-1-0", "Both images show dogs.", "True", directory=3),
                raw_trees.nlvr2_line("train-5-1-1", "One image shows a cat.", "False", directory=3),
            ]
        )
        + "\n",
    )
    raw_trees.write(root / "dev.json", raw_trees.nlvr2_line("dev-2-0-0", "There are two birds.", "False") + "\n")
    out = tmp_path / "out"
    manifest = ingest("nlvr2", root, out)
    check_manifest(out, manifest)
    assert read_split(out, "train").to_pylist() == [
        {
            "image_0": images[("train-5-1", 0)],
            "image_1": images[("train-5-1", 1)],
            "questions": ["Both images show dogs.", "One image shows a cat."],
            "answers": ["True", "False"],
            "identifier": "train-5-1",
            "split": "train",
        }
    ]
    assert read_split(out, "dev").column("identifier").to_pylist() == ["dev-2-0"]


def test_text_round_trip(tmp_path):
    root = tmp_path / "text"
    raw_trees.write(root / "wiki.train.raw", " \n = Title = \n \n First one . Second one .\n = = Part = = \n Third .\n")
    raw_trees.write(root / "wiki.valid.raw", " Valid sentence .\n")
    out = tmp_path / "out"
    manifest = ingest("text", root, out)
    check_manifest(out, manifest)
    assert read_split(out, "train").to_pylist() == [
        {"caption": [s], "source": "wiki.train.raw", "split": "train"}
        for s in ["First one .", "Second one .", "Third ."]
    ]
    assert read_split(out, "val").column("caption").to_pylist() == [["Valid sentence ."]]


def test_process_pool_keeps_order_and_bounds_records_in_flight(tmp_path):
    """The reader is never more than max_inflight_chunks (+1 being filled) chunks ahead of the writer."""
    from vlmo_pipeline.data.ingest import process_items
    from vlmo_pipeline.data.raw.records import ImageSource, RawRecord, Reject

    image = raw_trees.write(tmp_path / "a.jpg", raw_trees.image_bytes())
    pulled = []

    def records():
        for index in range(40):
            pulled.append(index)
            if index % 7 == 3:
                yield Reject(f"r{index}", "reader", "empty_caption")
            else:
                yield RawRecord(
                    f"r{index}",
                    "train",
                    "reader",
                    {"image_id": f"r{index}"},
                    {"image": ImageSource(str(image if index % 5 else tmp_path / "gone.jpg"))},
                )

    config = IngestConfig(workers=2, chunk_size=3, max_inflight_chunks=2)
    ahead = []
    results = []
    for result in process_items(records(), config):
        results.append(result)
        ahead.append(len(pulled) - len(results))
    assert max(ahead) <= 3 * (2 + 1)
    assert len(results) == 40
    for index, result in enumerate(results):
        if index % 7 == 3:
            assert result == Reject(f"r{index}", "reader", "empty_caption")
        elif index % 5 == 0:
            assert (result.record, result.reason) == (f"r{index}", "missing_file")
        else:
            assert result == ("train", {"image_id": f"r{index}", "image": image.read_bytes()})
