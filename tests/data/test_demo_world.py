"""Tests of the demo-world generator: layout, determinism, fidelity to the real formats, balance, consistency."""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import random
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlmo_pipeline.data.demo import generate_demo_world, language, nlvr2, vqav2
from vlmo_pipeline.data.demo import scene as scenes
from vlmo_pipeline.data.demo import world as demo_world
from vlmo_pipeline.data.demo.img2dataset import DownloadRow, sample_key, write_img2dataset

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SAMPLES = SHARED / "datasamples"
N_IMAGES = 20


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world_a")
    summary = generate_demo_world(root, n_images=N_IMAGES, seed=0, show_progress=False)
    return root, summary


@pytest.fixture(scope="module")
def samples():
    if not SAMPLES.is_dir():
        pytest.skip(f"real data samples not found at {SAMPLES} (the shared/ folder beside the repository)")
    return SAMPLES


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_same_shape(ours: dict, real: dict, where: str, ignore: tuple[str, ...] = ()) -> None:
    """Same keys in the same order, and the same JSON value type per key."""
    real_keys = [k for k in real if k not in ignore]
    assert list(ours) == real_keys, f"{where}: keys {list(ours)} != real {real_keys}"
    for key in real_keys:
        assert type(ours[key]) is type(real[key]), (
            f"{where}.{key}: {type(ours[key]).__name__} != real {type(real[key]).__name__}"
        )


# --------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(world, tmp_path):
    root_a, summary_a = world
    summary_b = generate_demo_world(tmp_path / "b", n_images=N_IMAGES, seed=0, show_progress=False)
    digest_a, digest_b = tree_digest(root_a), tree_digest(tmp_path / "b")
    assert digest_a == digest_b
    assert {k: v for k, v in summary_a.items() if k != "out_dir"}["datasets"].keys() == summary_b["datasets"].keys()

    generate_demo_world(tmp_path / "c", n_images=N_IMAGES, seed=1, show_progress=False)
    digest_c = tree_digest(tmp_path / "c")
    for name in (
        "coco/karpathy/dataset_coco.json",
        "nlvr2/train.json",
        "vqav2/v2_mscoco_train2014_annotations.json",
        "text/wiki.train.raw",
        "cc3m/Train_GCC-training.tsv",
    ):
        assert digest_a[name] != digest_c[name], name


# --------------------------------------------------------------------------------------------- layout


def test_every_file_of_the_layout_exists(world):
    root, summary = world
    coco = root / "coco"
    for name in (
        "karpathy/dataset_coco.json",
        "annotations/captions_train2014.json",
        "annotations/captions_val2014.json",
    ):
        assert (coco / name).is_file(), name
    karpathy = load_json(coco / "karpathy/dataset_coco.json")
    assert {img["split"] for img in karpathy["images"]} == {"train", "restval", "val", "test"}
    for img in karpathy["images"]:
        assert (coco / img["filepath"] / img["filename"]).is_file()
        expected_folder = (
            "train2014" if img["split"] == "train" else "val2014"
        )  # Karpathy's restval/val/test are val2014
        assert img["filepath"] == expected_folder
        assert img["filename"] == f"COCO_{expected_folder}_{img['cocoid']:012d}.jpg"
    assert len(karpathy["images"]) == sum(summary["datasets"]["coco"]["images"].values())

    f30k = load_json(root / "f30k/karpathy/dataset_flickr30k.json")
    assert {img["split"] for img in f30k["images"]} == {"train", "val", "test"}
    assert all((root / "f30k/flickr30k-images" / img["filename"]).is_file() for img in f30k["images"])

    for entry in load_json(root / "vg/image_data.json"):
        assert (root / "vg" / Path(*entry["url"].split("/")[-2:])).is_file(), entry["url"]
    assert (root / "vg/region_descriptions.json").is_file()

    for tsv, folder, layout_file in (
        ("Train_GCC-training.tsv", "images_train", "00000"),
        ("Validation_GCC-1.1.0-Validation.tsv", "images_val", "00000.tar"),
    ):
        assert (root / "cc3m" / tsv).is_file()
        for name in (layout_file, "00000.parquet", "00000_stats.json"):
            assert (root / "cc3m" / folder / name).exists(), f"cc3m/{folder}/{name}"
    assert (root / "sbu/sbu-captions-all.json").is_file()
    for name in ("00000", "00000.parquet", "00000_stats.json"):
        assert (root / "sbu/images" / name).exists(), name

    for subset in ("train2014", "val2014"):
        assert (root / f"vqav2/v2_OpenEnded_mscoco_{subset}_questions.json").is_file()
        assert (root / f"vqav2/v2_mscoco_{subset}_annotations.json").is_file()

    for split in ("train", "dev", "test1"):
        for line in read_jsonl(root / f"nlvr2/{split}.json"):
            stem = line["identifier"].rsplit("-", 1)[0]
            folder = root / "nlvr2/images" / split / (str(line["directory"]) if split == "train" else "")
            for side in (0, 1):
                assert (folder / f"{stem}-img{side}.png").is_file(), f"{folder}/{stem}-img{side}.png"

    for name in ("wiki.train.raw", "wiki.valid.raw"):
        assert (root / "text" / name).is_file()
    assert set(summary["datasets"]) == set(demo_world.DATASETS)
    plan = demo_world.plan_counts(N_IMAGES)
    assert {s: v["images"] for s, v in summary["datasets"]["coco"]["splits"].items()} == plan["coco"]
    assert {s: v["images"] for s, v in summary["datasets"]["f30k"]["splits"].items()} == plan["f30k"]
    assert {s: v["pairs"] for s, v in summary["datasets"]["nlvr2"]["splits"].items()} == plan["nlvr2"]
    assert {s: v["rows"] for s, v in summary["datasets"]["cc3m"]["splits"].items()} == plan["cc3m"]
    json.dumps(summary)  # JSON-able


def test_images_decode_at_the_configured_size(world, tmp_path):
    root, _ = world
    paths = [p for p in root.rglob("*") if p.suffix in (".jpg", ".png")]
    assert len(paths) > 100
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (64, 64) and image.mode == "RGB", path
            assert image.format == ("PNG" if path.suffix == ".png" else "JPEG"), path
    with tarfile.open(root / "cc3m/images_val/00000.tar") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".jpg"))
        assert Image.open(io.BytesIO(tar.extractfile(member).read())).size == (64, 64)
    scene = scenes.sample_scene(random.Random(0), 40)
    assert scenes.render_scene(scene).size == (40, 40)


# --------------------------------------------------------------------------------------------- real formats


def test_coco_caption_files_match_the_real_structure(world, samples):
    root, _ = world
    real = load_json(samples / "coco/annotations/captions_val2014.json")
    for subset in ("train2014", "val2014"):
        ours = load_json(root / f"coco/annotations/captions_{subset}.json")
        assert_same_shape(ours, real, subset)
        assert_same_shape(ours["info"], real["info"], f"{subset}.info")
        for key in ("images", "licenses", "annotations"):
            for record in ours[key]:
                assert_same_shape(record, real[key][0], f"{subset}.{key}")
        image_ids = {img["id"] for img in ours["images"]}
        assert {ann["image_id"] for ann in ours["annotations"]} == image_ids
        assert len({ann["id"] for ann in ours["annotations"]}) == len(ours["annotations"])


def test_karpathy_files_match_the_real_structure(world, samples):
    root, _ = world
    real = load_json(samples / "karpathy/dataset_flickr8k.json")
    real_image, real_sentence = real["images"][0], real["images"][0]["sentences"][0]
    f30k = load_json(root / "f30k/karpathy/dataset_flickr30k.json")
    assert list(f30k) == list(real) and f30k["dataset"] == "flickr30k"
    coco = load_json(root / "coco/karpathy/dataset_coco.json")
    assert list(coco) == list(real) and coco["dataset"] == "coco"
    for image in f30k["images"]:
        assert_same_shape(image, real_image, "f30k image")
    coco_keys = ["filepath", "sentids", "filename", "imgid", "split", "sentences", "cocoid"]  # the real COCO record
    for dataset in (f30k, coco):
        for image in dataset["images"]:
            if dataset is coco:
                assert list(image) == coco_keys
            assert image["sentids"] == [s["sentid"] for s in image["sentences"]]
            for sentence in image["sentences"]:
                assert_same_shape(sentence, real_sentence, "sentence")
                assert sentence["imgid"] == image["imgid"]
                assert sentence["tokens"] == re.findall(r"[a-z0-9]+", sentence["raw"].lower())
    assert all(5 <= len(image["sentences"]) <= 7 for image in coco["images"])


def test_visual_genome_files_match_the_real_structure(world, samples):
    root, _ = world
    real_images = load_json(samples / "vg/image_data.json")
    real_regions = load_json(samples / "vg/region_descriptions.json")
    ours_images = load_json(root / "vg/image_data.json")
    ours_regions = load_json(root / "vg/region_descriptions.json")
    for record in ours_images:
        assert_same_shape(record, real_images[0], "image_data")
    for entry in ours_regions:
        assert_same_shape(entry, real_regions[0], "region_descriptions")
        assert 3 <= len(entry["regions"]) <= 6
        for region in entry["regions"]:
            assert_same_shape(region, real_regions[0]["regions"][0], "region")
            assert region["image_id"] == entry["id"]
            assert 0 <= region["x"] and region["x"] + region["width"] <= 64
            assert 0 <= region["y"] and region["y"] + region["height"] <= 64


def test_vqa_files_match_the_real_structure(world, samples):
    root, _ = world
    real_questions = load_json(samples / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json")
    real_annotation = load_json(samples / "vqav2/nlp1_2017_subset/vqa_annotatons_test.json")["annotations"][0]
    coco_ids = {
        subset: {img["id"] for img in load_json(root / f"coco/annotations/captions_{subset}.json")["images"]}
        for subset in ("train2014", "val2014")
    }
    for subset in ("train2014", "val2014"):
        questions = load_json(root / f"vqav2/v2_OpenEnded_mscoco_{subset}_questions.json")
        assert_same_shape(questions, real_questions, "questions file")
        assert_same_shape(questions["info"], real_questions["info"], "questions.info")
        assert questions["data_subtype"] == subset
        for question in questions["questions"]:
            assert_same_shape(question, real_questions["questions"][0], "question")
        annotations = load_json(root / f"vqav2/v2_mscoco_{subset}_annotations.json")
        assert list(annotations) == ["info", "license", "data_subtype", "annotations", "data_type"]
        for record in annotations["annotations"]:
            assert_same_shape(record, real_annotation, "annotation", ignore=("split",))
            assert len(record["answers"]) == 10
            assert [a["answer_id"] for a in record["answers"]] == list(range(1, 11))
            for answer in record["answers"]:
                assert_same_shape(answer, real_annotation["answers"][0], "answer")
                assert answer["answer_confidence"] in ("yes", "maybe", "no")
            assert record["answer_type"] in ("yes/no", "number", "other")
            majority = collections.Counter(a["answer"] for a in record["answers"]).most_common(1)[0]
            assert record["multiple_choice_answer"] == majority[0] and majority[1] >= 7
        assert [q["question_id"] for q in questions["questions"]] == [
            a["question_id"] for a in annotations["annotations"]
        ]
        assert {q["image_id"] for q in questions["questions"]} == coco_ids[subset]


def test_nlvr2_files_match_the_real_structure(world, samples):
    root, _ = world
    real = read_jsonl(samples / "nlvr2/dev.json")[0]
    for split in ("train", "dev", "test1"):
        lines = read_jsonl(root / f"nlvr2/{split}.json")
        assert lines
        for line in lines:
            if split == "train":
                assert list(line)[-1] == "directory" and isinstance(line["directory"], int)
                line = {k: v for k, v in line.items() if k != "directory"}
            assert_same_shape(line, real, f"nlvr2 {split}")
            assert line["label"] in ("True", "False")
            assert re.fullmatch(rf"{split}-\d+-[0-3]-[01]", line["identifier"])
            assert all(isinstance(k, str) and v in ("True", "False") for k, v in line["validation"].items())
            assert (line["extra_validations"] == {}) == (split == "train")


def test_cc3m_and_sbu_match_the_real_structure(world, samples):
    root, _ = world
    for name in ("Train_GCC-training.tsv", "Validation_GCC-1.1.0-Validation.tsv"):
        real_lines = (samples / "cc3m" / name).read_text(encoding="utf-8").splitlines()
        ours = (root / "cc3m" / name).read_text(encoding="utf-8")
        assert ours.endswith("\n")
        for lines in (real_lines, ours.splitlines()):
            for line in lines:
                caption, url = line.split("\t")  # exactly two fields, no header
                assert caption and url.startswith("http")
    real_sbu = load_json(samples / "sbu/sbu-captions-all.json")
    ours_sbu = load_json(root / "sbu/sbu-captions-all.json")
    assert list(ours_sbu) == list(real_sbu)
    assert len({len(v) for v in ours_sbu.values()}) == 1
    for key in real_sbu:
        assert all(isinstance(v, str) for v in ours_sbu[key])
    assert all(re.fullmatch(r"\d+@N\d\d", user) for user in ours_sbu["user_ids"] + real_sbu["user_ids"])


def test_img2dataset_outputs_are_consistent_with_the_url_lists(world):
    root, _ = world
    cases = [
        (root / "cc3m/Train_GCC-training.tsv", root / "cc3m/images_train", "files"),
        (root / "cc3m/Validation_GCC-1.1.0-Validation.tsv", root / "cc3m/images_val", "webdataset"),
        (root / "sbu/sbu-captions-all.json", root / "sbu/images", "files"),
    ]
    for source, folder, layout in cases:
        if source.suffix == ".tsv":
            pairs = [line.split("\t") for line in source.read_text(encoding="utf-8").splitlines()]
        else:
            sbu = load_json(source)
            pairs = list(zip(sbu["captions"], sbu["image_urls"]))
        table = pq.read_table(folder / "00000.parquet")
        assert table.column_names[:7] == ["caption", "url", "key", "status", "error_message", "width", "height"]
        rows = table.to_pylist()
        assert [(r["caption"], r["url"]) for r in rows] == [tuple(p) for p in pairs]
        assert [r["key"] for r in rows] == [f"{i:09d}" for i in range(len(rows))]
        failed = [r for r in rows if r["status"] == "failed_to_download"]
        assert 1 <= len(failed) <= max(1, 0.05 * len(rows)) and all(
            r["error_message"] and r["width"] is None for r in failed
        )
        stats = load_json(folder / "00000_stats.json")
        assert stats["count"] == len(rows) and stats["successes"] == len(rows) - len(failed)
        if layout == "files":
            present = {p.name for p in (folder / "00000").iterdir()}
        else:
            with tarfile.open(folder / "00000.tar") as tar:
                present = set(tar.getnames())
        for row in rows:
            names = {f"{row['key']}.{ext}" for ext in ("jpg", "txt", "json")}
            assert names <= present if row["status"] == "success" else not (names & present), row["key"]


def test_img2dataset_writer_shards_and_keys(tmp_path):
    rows = [
        DownloadRow(
            f"caption {i}",
            f"https://demo.invalid/{i}.jpg",
            None if i == 3 else b"\xff\xd8fake",
            8,
            8,
            "HTTP Error 404: Not Found" if i == 3 else None,
        )
        for i in range(17)
    ]
    totals = write_img2dataset(tmp_path / "wds", iter(rows), "webdataset", samples_per_shard=7)
    assert totals == {"count": 17, "successes": 16, "failed_to_download": 1, "shards": 3}
    assert sorted(p.name for p in (tmp_path / "wds").iterdir()) == [
        f"0000{s}{suffix}" for s in range(3) for suffix in (".parquet", ".tar", "_stats.json")
    ]
    assert sample_key(2, 1, 7) == "000012" and sample_key(1, 0, 10_000) == "000000001"
    with tarfile.open(tmp_path / "wds/00001.tar") as tar:
        assert tar.getnames()[:3] == ["000010.jpg", "000010.json", "000010.txt"]
    with pytest.raises(ValueError, match="output_format"):
        write_img2dataset(tmp_path / "x", rows, "tfrecord")


def test_wikitext_structure(world):
    root, summary = world
    for name in ("wiki.train.raw", "wiki.valid.raw"):
        lines = (root / "text" / name).read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "" and lines[0] == " "
        headings = [line for line in lines if re.fullmatch(r" (= )+[A-Za-z ]+ (= )+", line)]
        paragraphs = [line for line in lines[:-1] if line.strip() and line not in headings]
        assert headings and paragraphs
        assert all(line.startswith(" ") and line.endswith(" . ") for line in paragraphs)
    splits = summary["datasets"]["text"]["splits"]
    assert (
        splits["train"]["sentences"] + splits["val"]["sentences"]
        == demo_world.plan_counts(N_IMAGES)["text"]["sentences"]
    )


# --------------------------------------------------------------------------------------------- learnability


def test_vqa_yes_no_is_balanced_and_text_alone_predicts_little():
    rng = random.Random(7)
    qas = [vqav2.vqa_questions(scenes.sample_scene(rng, 64), rng, 4) for _ in range(1500)]
    train = [qa for per_image in qas[:1000] for qa in per_image]
    test = [qa for per_image in qas[1000:] for qa in per_image]
    yes_no = [qa.answer for qa in train if qa.answer_type == "yes/no"]
    assert 0.45 <= yes_no.count("yes") / len(yes_no) <= 0.55
    # A text-only "model": the most frequent training answer for the exact question string.
    by_question = collections.defaultdict(collections.Counter)
    for qa in train:
        by_question[qa.question][qa.answer] += 1
    fallback = collections.Counter(qa.answer for qa in train).most_common(1)[0][0]
    correct = [
        (by_question[qa.question].most_common(1)[0][0] if qa.question in by_question else fallback) == qa.answer
        for qa in test
    ]
    assert sum(correct) / len(correct) < 0.5
    colors = collections.Counter(qa.answer for qa in train if qa.answer in scenes.COLORS)
    assert len(colors) == len(scenes.COLORS) and max(colors.values()) < 2.5 * min(colors.values())


def test_generated_answers_and_labels_are_balanced(world):
    root, summary = world
    answers = []
    for subset in ("train2014", "val2014"):
        for record in load_json(root / f"vqav2/v2_mscoco_{subset}_annotations.json")["annotations"]:
            if record["answer_type"] == "yes/no":
                answers.append(record["multiple_choice_answer"])
    assert 0.4 <= answers.count("yes") / len(answers) <= 0.6
    for split in ("train", "dev", "test1"):
        groups = collections.defaultdict(list)
        for line in read_jsonl(root / f"nlvr2/{split}.json"):
            set_id, _, sentence = line["identifier"].split("-")[1:]
            groups[(set_id, sentence)].append(line["label"])
        assert all(sorted(labels) == ["False", "False", "True", "True"] for labels in groups.values())
        labels = summary["datasets"]["nlvr2"]["splits"][split]["labels"]
        assert 0.4 <= labels["True"] / (labels["True"] + labels["False"]) <= 0.6


def _has(scene, colour: str, shape: str | None = None) -> bool:
    return any(o.color == colour and (shape is None or o.shape == shape) for o in scene.objects)


def _truth_from_sentence(text: str, left, right) -> bool:
    """Recompute a statement's truth from its words alone (independently of ``Statement.holds``)."""
    pick = {"left": left, "right": right}
    if m := re.fullmatch(
        r"(?:The (left|right) image contains an? (\w+) shape|There is an? (\w+) shape in the (left|right) image)\.",
        text,
    ):
        return _has(pick[m[1] or m[4]], m[2] or m[3])
    if m := re.fullmatch(r"The (left|right) image shows an? (\w+) (\w+)\.", text):
        return _has(pick[m[1]], m[2], m[3])
    if m := re.fullmatch(r"(?:Both images contain an? (\w+) shape|Each image shows at least one (\w+) shape)\.", text):
        colour = m[1] or m[2]
        return _has(left, colour) and _has(right, colour)
    if m := re.fullmatch(r"Both images contain an? (\w+) (\w+)\.", text):
        return _has(left, m[1], m[2]) and _has(right, m[1], m[2])
    if m := re.fullmatch(r"At least one image contains an? (\w+) shape\.", text):
        return _has(left, m[1]) or _has(right, m[1])
    if m := re.fullmatch(r"At least one image contains an? (\w+) (\w+)\.", text):
        return _has(left, m[1], m[2]) or _has(right, m[1], m[2])
    if m := re.fullmatch(
        r"There are more (\w+) shapes in the (left|right) image than in the (left|right) image\.", text
    ):
        count = {side: sum(o.color == m[1] for o in scene.objects) for side, scene in pick.items()}
        return count[m[2]] > count[m[3]]
    raise AssertionError(f"unknown NLVR2 sentence form: {text!r}")


def test_nlvr2_statements_are_computed_from_the_scenes():
    rng = random.Random(3)
    forms = set()
    for _ in range(400):
        statement = nlvr2.random_statement(rng)
        left, right = (scenes.sample_scene(rng, 64, focus=list(statement.focus)) for _ in range(2))
        assert statement.holds(left, right) == _truth_from_sentence(statement.sentence, left, right), statement.sentence
        words = statement.sentence.split()
        forms.add(" ".join(w for w in words if w not in scenes.COLOR_NAMES and w.rstrip(".") not in scenes.SHAPES))
    assert len(forms) >= 7  # every template (and both phrasings of some) was drawn


def test_text_mentions_only_what_the_scene_contains():
    rng = random.Random(11)
    red_circles = scenes.sample_scene(rng, 64, n_objects=3, focus=[("red", "circle")], focus_prob=1.0)
    assert {(o.color, o.shape) for o in red_circles.objects} == {("red", "circle")}
    vocabulary = set(scenes.COLOR_NAMES) | set(scenes.SHAPES) | {language.plural(s) for s in scenes.SHAPES}
    for _ in range(300):
        scene = scenes.sample_scene(rng, 64) if _ else red_circles
        allowed = (
            {o.color for o in scene.objects}
            | {o.shape for o in scene.objects}
            | {language.plural(o.shape) for o in scene.objects}
        )
        texts = language.scene_captions(scene, rng, 6) + [
            language.web_caption(scene, rng),
            language.user_caption(scene, rng),
        ]
        texts += [phrase for phrase, _ in language.region_phrases(scene, rng)]
        for text in texts:
            mentioned = set(re.findall(r"[a-z]+", text.lower())) & vocabulary
            assert mentioned <= allowed, (text, scene.objects)
        captions = language.scene_captions(scene, rng, 5)
        for obj in scene.objects:  # every object's colour appears in some caption (retrieval needs it)
            assert any(obj.color in caption for caption in captions)


def test_relations_and_positions_agree_with_the_geometry():
    rng = random.Random(5)
    for _ in range(300):
        scene = scenes.sample_scene(rng, 64)
        for obj in scene.objects:
            x, y, width, height = obj.box
            cell = 64 / 3  # each shape stays inside its grid cell, so the position words are unambiguous
            assert obj.col * cell - 1 <= x and x + width <= (obj.col + 1) * cell + 1
            assert obj.row * cell - 1 <= y and y + height <= (obj.row + 1) * cell + 1
        for a in scene.objects:
            for b in scene.objects:
                if a is b:
                    continue
                words = language.relation_words(a, b)
                assert words
                assert ("to the left of" in words) == (a.box[0] + a.box[2] <= b.box[0])
                assert ("to the right of" in words) == (b.box[0] + b.box[2] <= a.box[0])
                assert ("above" in words) == (a.box[1] + a.box[3] <= b.box[1])
                assert ("below" in words) == (b.box[1] + b.box[3] <= a.box[1])


def test_region_boxes_frame_every_shape_and_the_pixels_show_the_named_colours(world):
    root, _ = world
    images = {
        entry["image_id"]: root / "vg" / Path(*entry["url"].split("/")[-2:])
        for entry in load_json(root / "vg/image_data.json")
    }
    checked = 0
    for entry in load_json(root / "vg/region_descriptions.json"):
        pixels = Image.open(images[entry["id"]]).convert("RGB")
        named = set()
        for region in entry["regions"]:
            named |= set(re.findall(r"[a-z]+", region["phrase"])) & set(scenes.COLORS)
        # every named colour is present somewhere inside the region box (the box frames all the shapes)
        region = entry["regions"][0]
        crop = pixels.crop((region["x"], region["y"], region["x"] + region["width"], region["y"] + region["height"]))
        present = list(crop.getdata())
        for colour in named:
            expected = scenes.COLORS[colour]
            assert any(sum(abs(a - e) for a, e in zip(pixel, expected)) < 60 for pixel in present), (region, colour)
            checked += 1
    assert checked >= 20


def _random_captions(rng, scene):
    """Every kind of pretraining caption the world writes for one scene (COCO/F30K, CC3M, SBU, VG)."""
    return (
        language.scene_caption_objects(scene, rng, 6)
        + [language.web_caption_object(scene, rng), language.user_caption_object(scene, rng)]
        + [caption for caption, _ in language.region_caption_objects(scene, rng)]
    )


def test_every_caption_is_true_of_its_own_scene():
    rng = random.Random(21)
    for _ in range(400):
        scene = scenes.sample_scene(rng, 48)
        for caption in _random_captions(rng, scene):
            assert caption.holds(scene), (caption.text, scene.objects)


def test_caption_truth_follows_the_words():
    """A caption's truth function agrees with the coloured shapes its words name (independent recount)."""
    rng = random.Random(22)
    number = {word: n for n, word in enumerate(scenes.NUMBER_WORDS)}
    for _ in range(300):
        scene, other = scenes.sample_scene(rng, 48), scenes.sample_scene(rng, 48)
        for caption in language.scene_caption_objects(scene, rng, 6):
            words = re.findall(r"[a-z]+", caption.text)
            named = collections.Counter()
            for i, word in enumerate(words):
                shape = word[:-2] if word.endswith("es") and word[:-2] in scenes.SHAPES else word.rstrip("s")
                if shape in scenes.SHAPES and i and words[i - 1] in scenes.COLORS:
                    count = number.get(words[i - 2], 1) if i >= 2 else 1
                    named[(words[i - 1], shape)] += count
            if named != collections.Counter((o.color, o.shape) for o in other.objects):
                assert not caption.holds(other), caption.text


def test_look_alike_captions_are_rarely_true_of_the_image():
    """The official ITM sampler draws a negative caption from the other pairs of the batch, weighted by ITC
    similarity. Whatever the similarity, a drawn negative can be true of the image only if some other caption of
    the batch is; the share of images with such a caption bounds the share of wrong "no match" labels. Also
    measured with a lexical look-alike (the other caption sharing the most words), the hardest negative a
    bag-of-words ITC would pick. Measured on 200 batches of 32: bound 0.4 %, lexical look-alikes 0.2 %."""
    rng = random.Random(23)
    images = with_true_caption = look_alike_true = 0
    for _ in range(200):
        batch = [scenes.sample_scene(rng, 48) for _ in range(32)]
        captions = [rng.choice(_random_captions(rng, scene)) for scene in batch]
        words = [set(re.findall(r"[a-z]+", caption.text.lower())) for caption in captions]
        for i, scene in enumerate(batch):
            others = [j for j in range(len(batch)) if j != i]
            images += 1
            with_true_caption += any(captions[j].holds(scene) for j in others)
            nearest = max(others, key=lambda j: len(words[i] & words[j]) / len(words[i] | words[j]))
            look_alike_true += captions[nearest].holds(scene)
    assert with_true_caption / images < 0.02
    assert look_alike_true / images < 0.02


def test_question_families_cover_every_generated_question():
    rng = random.Random(24)
    families = collections.Counter()
    for _ in range(300):
        for qa in vqav2.vqa_questions(scenes.sample_scene(rng, 48), rng, 9):
            families[vqav2.question_family(qa.question)] += 1
    assert set(families) == set(vqav2.QUESTION_FAMILIES)
    assert min(families.values()) > 0.1 * sum(families.values())
    assert vqav2.question_family("Why is the sky blue?") == "unmatched"


# --------------------------------------------------------------------------------------------- safety and CLI


def test_refuses_to_replace_foreign_data_and_replaces_its_own(tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "real_file.txt").write_text("not demo data")
    with pytest.raises(FileExistsError, match="coco"):
        generate_demo_world(tmp_path, n_images=8, show_progress=False)
    assert (tmp_path / "coco" / "real_file.txt").read_text() == "not demo data"

    out = tmp_path / "demo"
    generate_demo_world(out, n_images=12, show_progress=False)
    summary = generate_demo_world(out, n_images=8, show_progress=False)  # smaller world: no stale files may remain
    assert len(list((out / "coco/train2014").iterdir())) == summary["datasets"]["coco"]["images"]["train2014"] == 8
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="n_images"):
        generate_demo_world(tmp_path, n_images=3, show_progress=False)
    with pytest.raises(ValueError, match="image_size"):
        generate_demo_world(tmp_path, n_images=8, image_size=16, show_progress=False)


def test_command_line(tmp_path, capsys):
    assert demo_world.main(["--out", str(tmp_path / "cli"), "--images", "8", "--seed", "3", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["seed"] == 3 and (tmp_path / "cli/nlvr2/dev.json").is_file()

    parser = argparse.ArgumentParser(prog="vlmo")
    demo_world.add_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo-data", "--out", str(tmp_path / "x"), "--images", "9"])
    assert args.func is not None and args.images == 9 and args.seed == 0
