"""The raw-format readers parse every real excerpt in ../shared/datasamples (and the answer/text helpers)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from vlmo_pipeline.data.raw import (
    RawRecord,
    Reject,
    iter_nlvr2_lines,
    iter_tsv,
    load_annotations,
    load_questions,
    load_sbu_json,
    normalize_answer,
    open_coco,
    open_f30k,
    open_nlvr2,
    open_text,
    open_vg,
    open_vqav2,
    pair_id,
    safe_join,
    score_answers,
    soft_score,
    split_sentences,
)
from vlmo_pipeline.data.raw.records import PathEscapesRootError
from vlmo_pipeline.data.raw.text import is_heading, split_of_file

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

SAMPLES = raw_trees.SAMPLES
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"shared data samples not found at {SAMPLES}")
LIMIT = 1000


def split_items(source):
    items = list(source.items)
    return [i for i in items if isinstance(i, RawRecord)], [i for i in items if isinstance(i, Reject)]


def test_coco_official_captions_sample():
    path = SAMPLES / "coco" / "annotations" / "captions_val2014.json"
    document = json.loads(path.read_text())
    expected = {}
    for annotation in sorted(document["annotations"], key=lambda a: a["id"]):
        expected.setdefault(annotation["image_id"], []).append(annotation["caption"].strip())

    source = open_coco(SAMPLES / "coco", max_caption_chars=LIMIT)  # no Karpathy file: official fallback
    records, rejects = split_items(source)
    assert source.splits == ("val",) and rejects == []
    assert len(records) == len(document["images"]) == 30
    assert [r.fields["image_id"] for r in records] == [f"COCO_val2014_{i:012d}.jpg" for i in sorted(expected)]
    for record in records:
        image_id = int(record.fields["image_id"][-16:-4])
        assert record.fields["caption"] == expected[image_id]
        assert record.split == "val"
        assert record.images["image"].path == str(SAMPLES / "coco" / "val2014" / record.fields["image_id"])
    assert max(len(r.fields["caption"]) for r in records) == 6  # the image with six captions keeps all six
    assert sum(Path(r.images["image"].path).is_file() for r in records) == 3


def test_karpathy_flickr8k_sample_reads_as_f30k():
    path = SAMPLES / "karpathy" / "dataset_flickr8k.json"
    entries = json.loads(path.read_text())["images"]
    source = open_f30k(SAMPLES / "flickr30k", max_caption_chars=LIMIT, karpathy_file=path)
    records, rejects = split_items(source)
    assert rejects == [] and len(records) == len(entries) == 5
    for record, entry in zip(records, entries):
        assert record.fields["image_id"] == entry["filename"]
        assert record.fields["caption"] == [s["raw"].strip() for s in entry["sentences"]]
        assert record.split == entry["split"] == "train"
        assert record.images["image"].path == str(SAMPLES / "flickr30k" / "flickr30k-images" / entry["filename"])


def test_visual_genome_sample():
    regions = json.loads((SAMPLES / "vg" / "region_descriptions.json").read_text())
    phrases = {entry["id"]: [r["phrase"].strip() for r in entry["regions"]] for entry in regions}
    records, rejects = split_items(open_vg(SAMPLES / "vg", max_caption_chars=LIMIT))
    assert rejects == []
    assert [r.fields["image_id"] for r in records] == ["1", "2"]
    assert [len(r.fields["caption"]) for r in records] == [262, 256]
    for record in records:
        assert record.fields["caption"] == phrases[int(record.record_id)]
        assert Path(record.images["image"].path).is_file()  # VG_100K_2/1.jpg and VG_100K/2.jpg from the urls


@pytest.mark.parametrize("name", ["Train_GCC-training.tsv", "Validation_GCC-1.1.0-Validation.tsv"])
def test_cc3m_tsv_samples_parse(name):
    path = SAMPLES / "cc3m" / name
    items = list(iter_tsv(path))
    assert not [i for i in items if isinstance(i, Reject)]
    assert len(items) == len(path.read_text(encoding="utf-8").splitlines())
    assert [i[0] for i in items] == list(range(1, len(items) + 1))
    assert all(url.startswith("http") and caption for _, caption, url in items)


def test_sbu_json_sample():
    document = load_sbu_json(SAMPLES / "sbu" / "sbu-captions-all.json")
    assert {key: len(values) for key, values in document.items()} == {"image_urls": 3, "user_ids": 3, "captions": 3}
    assert document["captions"][1] == "white horse near avebury"


def test_vqav2_official_questions_sample():
    questions, rejects = load_questions(SAMPLES / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json")
    assert rejects == [] and len(questions) == 18
    assert sorted({q["image_id"] for q in questions.values()}) == [131089, 240301, 262148, 393225, 393226]
    assert questions[262148000]["question"] == "Where is he looking?"


def test_vqav2_nlp1_subset_parses_with_explicit_paths(tmp_path):
    folder = SAMPLES / "vqav2" / "nlp1_2017_subset"
    annotations, rejects = load_annotations(folder / "vqa_annotatons_test.json")
    assert rejects == [] and len(annotations) == 60
    source = open_vqav2(
        tmp_path,
        max_caption_chars=LIMIT,
        image_root=tmp_path,
        min_answer_count=2,
        questions_files={"val": folder / "vqa_questions_test.json"},
        annotations_files={"val": folder / "vqa_annotatons_test.json"},
    )
    records, rejects = split_items(source)
    assert rejects == []
    assert source.splits == ("val",)
    assert sum(len(r.fields["questions"]) for r in records) == 60  # val keeps questions without vocab answers
    vocab = source.artifacts["answer_vocab.json"]
    counts = Counter(normalize_answer(a["multiple_choice_answer"]) for a in annotations)
    assert sorted(vocab) == sorted(answer for answer, n in counts.items() if n >= 2)
    by_question = {a["question_id"]: a for a in annotations}
    for record in records:
        assert record.fields["question_id"] == sorted(record.fields["question_id"])
        for qid, answers, labels, scores, kind in zip(
            record.fields["question_id"],
            record.fields["answers"],
            record.fields["answer_labels"],
            record.fields["answer_scores"],
            record.fields["answer_type"],
        ):
            assert answers == by_question[qid]["answers"]  # kept compact: the raw answer strings
            assert kind == by_question[qid]["answer_type"]
            for label, score in zip(labels, scores):
                assert score == soft_score(answers.count(vocab[label]))
    assert [r.fields["image_id"] for r in records] == sorted(r.fields["image_id"] for r in records)


@pytest.mark.parametrize("name", ["dev.json", "tiny-dev.json"])
def test_nlvr2_sentence_files_parse(name):
    path = SAMPLES / "nlvr2" / name
    items = list(iter_nlvr2_lines(path))
    assert not [i for i in items if isinstance(i, Reject)]
    assert len(items) == len([line for line in path.read_text().splitlines() if line.strip()])
    assert all(entry["label"] in ("True", "False") for _, entry in items)


def test_nlvr2_pairs_and_images_with_directory_level():
    source = open_nlvr2(SAMPLES / "nlvr2", max_caption_chars=LIMIT, files={"dev": SAMPLES / "nlvr2" / "tiny-dev.json"})
    records, rejects = split_items(source)
    assert rejects == []
    assert [r.fields["identifier"] for r in records] == ["dev-850-0", "dev-850-2", "dev-850-3", "dev-850-1"]
    assert sum(len(r.fields["questions"]) for r in records) == 8  # 8 lines (the last one has no newline)
    for record in records:
        assert len(record.fields["questions"]) == len(record.fields["answers"])
        for side in (0, 1):
            path = Path(record.images[f"image_{side}"].path)
            assert path == SAMPLES / "nlvr2" / "images" / "dev" / "850" / f"{record.record_id}-img{side}.png"
            assert path.is_file()


def test_wikitext_103_raw_sample():
    source = open_text(SAMPLES / "text" / "wikitext-103-raw", max_caption_chars=LIMIT)
    records, rejects = split_items(source)
    assert rejects == [] and source.splits == ("train", "val", "test")
    train = [r.fields["caption"][0] for r in records if r.split == "train"]
    assert train[0] == (
        "The Sinclair Scientific Programmable was introduced in 1975 , with the same case as the Sinclair Oxford ."
    )
    assert not any(sentence.startswith("=") for r in records for sentence in r.fields["caption"])
    assert {r.fields["source"] for r in records} == {"wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"}
    words = lambda text: text.split()  # noqa: E731 - every word of the non-heading lines survives, in order
    raw_words = [
        w
        for line in (SAMPLES / "text/wikitext-103-raw/wiki.train.raw").read_text().splitlines()
        if line.strip() and not is_heading(line)
        for w in words(line)
    ]
    assert [w for sentence in train for w in words(sentence)] == raw_words


def test_wikitext_2_and_bookcorpusopen_samples():
    wiki2, rejects = split_items(open_text(SAMPLES / "text" / "wikitext-2-pytorch-examples", max_caption_chars=LIMIT))
    assert rejects == [] and wiki2 and {r.split for r in wiki2} == {"test"}
    assert wiki2[0].fields["caption"][0].startswith("Robert <unk> is an English film")
    books, rejects = split_items(open_text(SAMPLES / "text" / "bookcorpusopen", max_caption_chars=LIMIT))
    assert rejects == [] and {r.split for r in books} == {"train"}
    assert books[0].fields["caption"] == ["English version (hybrid)"]


def test_text_helpers():
    assert is_heading(" = = Career = = \n") and is_heading(" = Robert <unk> = ")
    assert not is_heading(" a = b = c ") and not is_heading("plain text")
    assert split_sentences(" He met Mr. Smith in St. Louis . It rained ! Did it ? yes") == [
        "He met Mr. Smith in St. Louis .",
        "It rained !",
        "Did it ?",
        "yes",
    ]
    assert [split_of_file(Path(n)) for n in ("wiki.valid.raw", "wiki.train.raw", "test.txt", "wikibk.3.txt")] == [
        "val",
        "train",
        "test",
        "train",
    ]


def test_vqa_answer_normalisation_and_scores():
    assert normalize_answer("Two") == "2"
    assert normalize_answer("The dog.") == "dog"
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("1,000") == "1000"
    assert normalize_answer("3.5") == "3.5"
    assert normalize_answer("black-and-white") == "black and white"
    assert [soft_score(n) for n in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]
    labels, scores = score_answers(["yes"] * 3 + ["no"] * 6 + ["maybe"], {"no": 0, "yes": 1})
    assert (labels, scores) == ([1, 0], [0.9, 1.0])


def test_nlvr2_pair_id_and_safe_join(tmp_path):
    assert pair_id("dev-850-0-3") == "dev-850-0"
    assert safe_join(tmp_path, "train2014", "a.jpg") == tmp_path / "train2014" / "a.jpg"
    assert safe_join(tmp_path, "a/../b.jpg") == tmp_path / "b.jpg"
    for parts in [("..", "x.jpg"), ("/etc/passwd",), ("a", "../../x.jpg"), ("",)]:
        with pytest.raises(PathEscapesRootError):
            safe_join(tmp_path, *parts)
