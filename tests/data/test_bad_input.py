"""Bad input: every planted problem becomes a reject with the exact reason; every good record is kept."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from vlmo_pipeline.data.arrow_io import read_rejects, read_split
from vlmo_pipeline.data.images import ImageOptions, ImageRejected, validate_image_bytes
from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.data.raw.records import RawLayoutError

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

# max_reject_rate 1.0: these trees are mostly bad on purpose (outcome checks: tests/data/test_outcome_checks.py).
CONFIG = IngestConfig(
    workers=0, max_image_pixels=1_000_000, max_caption_chars=60, min_answer_count=1, max_reject_rate=1.0
)


def ingest(name, raw, out, **kwargs):
    return ingest_dataset(name, raw, out, CONFIG, show_progress=False, **kwargs)


def rejects_of(out: Path) -> list[tuple[str, str]]:
    return sorted((r["record"], r["reason"]) for r in read_rejects(out))


def bomb_png(size=(1500, 1500)) -> bytes:
    """A small file that decodes to many pixels (1-bit, all black: compresses to a few hundred bytes)."""
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG")
    return buffer.getvalue()


# --- image validation -------------------------------------------------------------------------------------------

GOOD_JPEG = raw_trees.image_bytes((64, 48))
GOOD_PNG = raw_trees.image_bytes((64, 48), fmt="PNG")
_IDAT = GOOD_PNG.find(b"IDAT")
BAD_CRC_PNG = (
    GOOD_PNG[: _IDAT + 10] + bytes(b ^ 0xFF for b in GOOD_PNG[_IDAT + 10 : _IDAT + 20]) + GOOD_PNG[_IDAT + 20 :]
)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "zero_byte"),
        (b"this is not an image at all" * 20, "corrupt_image"),
        (GOOD_JPEG[: len(GOOD_JPEG) // 2], "truncated_image"),
        (GOOD_PNG[: len(GOOD_PNG) - 30], "truncated_image"),
        (GOOD_JPEG[:40] + bytes(50) + GOOD_JPEG[90:], "corrupt_image"),  # broken JPEG tables: fails on decode
        (BAD_CRC_PNG, "corrupt_image"),  # damaged compressed data: fails verify()
        (bomb_png((1200, 1000)), "decompression_bomb"),  # above the limit: PIL's warning range
        (bomb_png((1500, 1500)), "decompression_bomb"),  # above twice the limit: PIL's error range
    ],
)
def test_validate_image_bytes_reasons(data, reason):
    with pytest.raises(ImageRejected) as raised:
        validate_image_bytes(data, ImageOptions(max_pixels=1_000_000))
    assert raised.value.reason == reason


def test_pixel_limit_is_a_parameter_and_pil_state_is_restored():
    saved = Image.MAX_IMAGE_PIXELS
    assert validate_image_bytes(bomb_png(), ImageOptions(max_pixels=3_000_000)) == bomb_png()
    assert Image.MAX_IMAGE_PIXELS == saved
    assert validate_image_bytes(GOOD_PNG) == GOOD_PNG


# --- COCO with every kind of bad image and caption ---------------------------------------------------------------


def test_coco_bad_images_and_captions(tmp_path, capsys):
    root = tmp_path / "coco"
    good = {name: raw_trees.image_bytes((20 + i, 20)) for i, name in enumerate(["good0.jpg", "good1.jpg", "good2.jpg"])}
    for name, data in good.items():
        raw_trees.write(root / "train2014" / name, data)
    raw_trees.write(root / "train2014" / "corrupt.jpg", b"\x00garbage" * 50)
    raw_trees.write(root / "train2014" / "truncated.jpg", GOOD_JPEG[: len(GOOD_JPEG) // 2])
    raw_trees.write(root / "train2014" / "empty.jpg", b"")
    raw_trees.write(root / "train2014" / "bomb.png", bomb_png())
    (tmp_path / "outside.jpg").write_bytes(GOOD_JPEG)
    entry = raw_trees.karpathy_entry
    five = ["one", "two", "three", "four", "five"]
    entries = [
        entry("good0.jpg", "train", five, filepath="train2014"),
        entry("good1.jpg", "train", ["fine", "   ", "x" * 61, "also fine", "fine again"], filepath="train2014"),
        entry("good2.jpg", "val", five, filepath="train2014"),
        entry("corrupt.jpg", "train", five, filepath="train2014"),
        entry("truncated.jpg", "train", five, filepath="train2014"),
        entry("missing.jpg", "train", five, filepath="train2014"),
        entry("empty.jpg", "train", five, filepath="train2014"),
        entry("bomb.png", "train", five, filepath="train2014"),
        entry("outside.jpg", "train", five, filepath=".."),
        entry("passwd", "train", five, filepath="/etc"),
        entry("good0.jpg", "train", ["", " "], filepath="train2014"),  # no caption left
        entry("good0.jpg", "nonsense", five, filepath="train2014"),
        {"filename": "broken.jpg"},  # no split / sentences
    ]
    raw_trees.write_json(root / "karpathy" / "dataset_coco.json", {"images": entries})
    out = tmp_path / "out"
    manifest = ingest("coco", root, out)

    assert rejects_of(out) == sorted(
        [
            ("good1.jpg#1", "empty_caption"),
            ("good1.jpg#2", "caption_too_long"),
            ("corrupt.jpg", "corrupt_image"),
            ("truncated.jpg", "truncated_image"),
            ("missing.jpg", "missing_file"),
            ("empty.jpg", "zero_byte"),
            ("bomb.png", "decompression_bomb"),
            ("outside.jpg", "path_escapes_root"),
            ("passwd", "path_escapes_root"),
            ("good0.jpg#0", "empty_caption"),
            ("good0.jpg#1", "empty_caption"),
            ("good0.jpg", "no_captions"),
            ("good0.jpg", "malformed_record"),
            ("images[12]", "malformed_record"),
        ]
    )
    train = read_split(out, "train").to_pylist()
    assert [(r["image_id"], r["caption"], r["image"]) for r in train] == [
        ("good0.jpg", five, good["good0.jpg"]),
        ("good1.jpg", ["fine", "also fine", "fine again"], good["good1.jpg"]),  # the other captions are kept
    ]
    assert read_split(out, "val").column("image_id").to_pylist() == ["good2.jpg"]
    by_record = {r["record"]: r for r in read_rejects(out)}
    assert by_record["missing.jpg"]["source"] == str(root / "train2014" / "missing.jpg")
    assert by_record["good1.jpg#1"]["source"] == str(root / "karpathy" / "dataset_coco.json")
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("[ingest coco] rows: train=2, restval=0, val=1, test=0; 14 rejects (")
    assert "decompression_bomb=1" in summary and "path_escapes_root=2" in summary
    assert manifest["rejects"] == 14


def test_coco_official_captions_unknown_image_id(tmp_path):
    root = tmp_path / "coco"
    raw_trees.write(root / "val2014" / "COCO_val2014_000000000001.jpg", GOOD_JPEG)
    raw_trees.write_json(
        root / "annotations" / "captions_val2014.json",
        {
            "info": {},
            "licenses": [],
            "images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg"}],
            "annotations": [
                {"image_id": 1, "id": 5, "caption": "b"},
                {"image_id": 1, "id": 4, "caption": "a"},
                {"image_id": 99, "id": 6, "caption": "orphan"},
            ],
        },
    )
    out = tmp_path / "out"
    ingest("coco", root, out)
    assert rejects_of(out) == [("annotation 6", "unknown_id")]
    assert read_split(out, "val").to_pylist()[0]["caption"] == ["a", "b"]


# --- img2dataset (CC3M / SBU) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["files", "webdataset"])
def test_cc3m_bad_lines_downloads_and_samples(tmp_path, layout):
    root = tmp_path / "cc3m"
    samples = [
        {"key": "000000000", "caption": "a good one", "image": GOOD_JPEG},
        {"key": "000000001", "caption": "x", "image": None, "status": "failed_to_download", "error": "timeout"},
        {"key": "000000002", "caption": "y", "image": None, "status": "failed_to_resize", "error": "bad image"},
        {"key": "000000003", "caption": "no image written", "image": None},
        {"key": "000000004", "caption": None, "image": GOOD_JPEG},  # no .txt
        {"key": "000000005", "caption": "  ", "image": GOOD_JPEG},
        {"key": "000000006", "caption": "zero", "image": b""},
        {"key": "000000007", "caption": "another good one", "image": GOOD_PNG},
    ]
    raw_trees.img2dataset_output(root / "images_train", samples, layout, per_shard=3)
    raw_trees.write(
        root / "Train_GCC-training.tsv",
        "fine caption\thttp://a\nno tab on this line\ntoo\tmany\tfields\n\thttp://empty-caption\n",
    )
    out = tmp_path / "out"
    manifest = ingest("cc3m", root, out)
    assert rejects_of(out) == sorted(
        [
            ("Train_GCC-training.tsv:2", "malformed_line"),
            ("Train_GCC-training.tsv:3", "malformed_line"),
            ("Train_GCC-training.tsv:4", "malformed_line"),
            ("000000001", "download_failed"),
            ("000000002", "corrupt_image"),
            ("000000003", "missing_file"),
            ("000000004", "missing_file"),
            ("000000005", "empty_caption"),
            ("000000006", "zero_byte"),
        ]
    )
    sources = {r["record"]: r["source"] for r in read_rejects(out)}
    assert sources["Train_GCC-training.tsv:2"] == f"{root / 'Train_GCC-training.tsv'}:2"
    assert sources["000000001"] == f"{root / 'images_train' / '00000.parquet'}:1"
    assert manifest["info"]["annotation_lines"] == {"train": 4}
    assert read_split(out, "train").to_pylist() == [
        {"image": GOOD_JPEG, "caption": ["a good one"], "image_id": "000000000", "split": "train"},
        {"image": GOOD_PNG, "caption": ["another good one"], "image_id": "000000007", "split": "train"},
    ]


def test_truncated_webdataset_tar(tmp_path):
    root = tmp_path / "sbu"
    samples = [{"key": f"{i:09d}", "caption": f"c{i}", "image": raw_trees.image_bytes((30 + i, 30))} for i in range(3)]
    raw_trees.img2dataset_output(root / "images", samples, "webdataset", per_shard=3)
    tar = root / "images" / "00000.tar"
    # Rewrite the tar so that key 1's image is the last member, then cut the file inside that image.
    with tarfile.open(tar) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    members = [m for m in members if not m[0].name.startswith("000000002")]
    members.sort(key=lambda m: m[0].name == "000000001.jpg")
    with tarfile.open(tar, "w") as archive:
        for member, data in members:
            archive.addfile(member, io.BytesIO(data))
    with tarfile.open(tar) as archive:
        image = archive.getmember("000000001.jpg")
    tar.write_bytes(tar.read_bytes()[: image.offset_data + image.size // 2])
    out = tmp_path / "out"
    manifest = ingest("sbu", root, out)
    assert manifest["splits"] == {"train": 1}
    assert rejects_of(out) == [("000000001", "truncated_image"), ("000000002", "missing_file")]
    assert read_split(out, "train").column("image").to_pylist() == [samples[0]["image"]]


# --- VQA, NLVR2, VG ---------------------------------------------------------------------------------------------


def test_vqav2_unknown_ids_missing_images_and_malformed(tmp_path):
    coco = tmp_path / "coco"
    raw_trees.write(coco / "train2014" / "COCO_train2014_000000000001.jpg", GOOD_JPEG)
    root = tmp_path / "vqav2"
    ann = raw_trees.vqa_annotation
    raw_trees.vqa_files(
        root,
        "train2014",
        [(10, 1, "What?"), (11, 1, ""), (12, 1, "No annotation?"), (20, 2, "Image missing?")],
        [
            ann(10, 1, ["yes"] * 10),
            ann(11, 1, ["no"] * 10),
            ann(20, 2, ["no"] * 10),
            ann(99, 1, ["yes"] * 10),  # no such question
            {"question_id": 13, "answers": "not a list", "multiple_choice_answer": "x"},
        ],
    )
    out = tmp_path / "out"
    manifest = ingest("vqav2", root, out)
    assert rejects_of(out) == sorted(
        [
            ("question 99", "unknown_id"),
            ("question 12", "unknown_id"),
            ("question 11", "empty_caption"),
            ("question 13", "malformed_record"),
            ("image 2", "missing_file"),
        ]
    )
    assert manifest["splits"] == {"train": 1}
    assert read_split(out, "train").to_pylist()[0]["question_id"] == [10]


def test_nlvr2_bad_lines_paths_and_images(tmp_path):
    root = tmp_path / "nlvr2"
    for pair in ("train-1-0", "train-1-1"):
        for side in (0, 1):
            raw_trees.write(root / "images" / "train" / "7" / f"{pair}-img{side}.png", GOOD_PNG)
    (root / "images" / "train" / "7" / "train-1-1-img1.png").write_bytes(b"")
    lines = [
        raw_trees.nlvr2_line("train-1-0-0", "Good sentence.", "True", directory=7),
        "this line is not json",
        raw_trees.nlvr2_line("train-1-0-1", "Bad label.", "Maybe", directory=7),
        json.dumps(["a", "list"]),
        raw_trees.nlvr2_line("train-1-1-0", "Zero byte right image.", "False", directory=7),
        raw_trees.nlvr2_line("train-1-2-0", "Escaping directory.", "True", directory="../../.."),
        raw_trees.nlvr2_line("train-1-3-0", "Missing images.", "True", directory=7),
        raw_trees.nlvr2_line("train-1-0-2", "", "True", directory=7),
    ]
    raw_trees.write(root / "train.json", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    ingest("nlvr2", root, out)
    assert rejects_of(out) == sorted(
        [
            ("train.json:2", "malformed_line"),
            ("train-1-0-1", "malformed_line"),
            ("train.json:4", "malformed_line"),
            ("train-1-1", "zero_byte"),
            ("train-1-2", "path_escapes_root"),
            ("train-1-3", "missing_file"),
            ("train-1-0-2", "empty_caption"),
        ]
    )
    sources = {r["record"]: r["source"] for r in read_rejects(out)}
    assert sources["train.json:2"] == f"{root / 'train.json'}:2"
    rows = read_split(out, "train").to_pylist()
    assert [(r["identifier"], r["questions"], r["answers"]) for r in rows] == [
        ("train-1-0", ["Good sentence."], ["True"])
    ]


def test_vg_unknown_image_ids_and_escaping_urls(tmp_path):
    root = tmp_path / "vg"
    raw_trees.write(root / "VG_100K" / "1.jpg", GOOD_JPEG)
    raw_trees.write_json(
        root / "image_data.json",
        [
            {"image_id": 1, "url": "https://x/rak248/VG_100K/1.jpg", "width": 64, "height": 48},
            {"image_id": 2, "url": "https://x/rak248/../2.jpg", "width": 64, "height": 48},
            {"image_id": 3, "url": "https://x/VG_100K/3.jpg"},
        ],
    )

    def region(image_id, phrase):
        return {"region_id": 0, "image_id": image_id, "phrase": phrase, "x": 0, "y": 0, "width": 1, "height": 1}

    raw_trees.write_json(
        root / "region_descriptions.json",
        [
            {"id": 1, "regions": [region(1, "a cup"), region(1, "")]},
            {"id": 2, "regions": [region(2, "a dog")]},
            {"id": 3, "regions": []},
            {"id": 42, "regions": [region(42, "nobody's image")]},
        ],
    )
    out = tmp_path / "out"
    ingest("vg", root, out)
    assert rejects_of(out) == sorted(
        [("42", "unknown_id"), ("1#1", "empty_caption"), ("2", "path_escapes_root"), ("3", "no_captions")]
    )
    assert read_split(out, "train").to_pylist() == [
        {"image": GOOD_JPEG, "caption": ["a cup"], "image_id": "1", "split": "train"}
    ]


# --- layout errors: one clear error naming the path ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,setup,message",
    [
        ("coco", lambda r: None, r"coco: no COCO caption annotations: expected karpathy/dataset_coco\.json"),
        (
            "coco",
            lambda r: raw_trees.write(r / "karpathy/dataset_coco.json", "{not json"),
            r"dataset_coco\.json: not valid JSON",
        ),
        (
            "coco",
            lambda r: raw_trees.write_json(r / "karpathy/dataset_coco.json", {"annotations": []}),
            r"dataset_coco\.json: expected a Karpathy split file",
        ),
        ("f30k", lambda r: None, r"dataset_flickr30k\.json: missing Karpathy split file"),
        (
            "vg",
            lambda r: raw_trees.write_json(r / "image_data.json", []),
            r"region_descriptions\.json: missing required Visual Genome file",
        ),
        (
            "vqav2",
            lambda r: raw_trees.vqa_files(r, "train2014", [(1, 1, "q")], None),
            r"v2_mscoco_train2014_annotations\.json: missing annotations",
        ),
        (
            "vqav2",
            lambda r: (
                raw_trees.vqa_files(r, "val2014", [], []),
                raw_trees.write_json(r / "v2_OpenEnded_mscoco_val2014_questions.json", [1, 2]),
            ),
            r"questions\.json: expected a VQA questions file",
        ),
        ("nlvr2", lambda r: None, r"nlvr2: no NLVR2 sentence file"),
        ("cc3m", lambda r: raw_trees.write(r / "Train_GCC-training.tsv", "a\tb\n"), r"cc3m: no CC3M image folders"),
        ("cc3m", lambda r: (r / "images_train").mkdir(parents=True), r"images_train: no img2dataset shards"),
        ("sbu", lambda r: None, r"images: no SBU image folder"),
        (
            "sbu",
            lambda r: (
                raw_trees.img2dataset_output(r / "images", [], "files"),
                raw_trees.write_json(r / "sbu-captions-all.json", {"image_urls": [1], "user_ids": [], "captions": [1]}),
            )[0],
            r"no img2dataset shards",
        ),
        ("text", lambda r: raw_trees.write(r / "notes.md", "x"), r"text: no text corpus files"),
    ],
)
def test_layout_errors(tmp_path, name, setup, message):
    root = tmp_path / name
    root.mkdir()
    setup(root)
    with pytest.raises(RawLayoutError, match=message):
        ingest(name, root, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing is written before the layout is known to be right


def test_sbu_json_with_unequal_lists(tmp_path):
    root = tmp_path / "sbu"
    raw_trees.img2dataset_output(root / "images", [{"key": "000000000", "caption": "c", "image": GOOD_JPEG}], "files")
    raw_trees.write_json(root / "sbu-captions-all.json", {"image_urls": [1, 2], "user_ids": [1], "captions": [1]})
    with pytest.raises(RawLayoutError, match=r"sbu-captions-all\.json: parallel lists differ in length"):
        ingest("sbu", root, tmp_path / "out")
