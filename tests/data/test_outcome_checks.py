"""Outcome checks and real-world annotation variants (issue 12, items 3 and 4).

* a split whose every record is rejected, or whose reject rate exceeds ``max_reject_rate``, fails the run with a
  summary; the good rows and ``rejects.jsonl`` stay, no manifest is written, ``ingest_failed.json`` explains;
* one non-UTF-8 line in a CC3M TSV / text corpus / NLVR2 file is one reject with its real line number;
* VQA annotations without ``multiple_choice_answer`` / ``answer_type`` / ``question_type`` / ``image_id``;
  WikiText v1 ``*.tokens`` files; a question is never rejected twice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlmo_pipeline.data.arrow_io import MANIFEST_NAME, load_manifest, read_rejects, read_split
from vlmo_pipeline.data.ingest import FAILURE_NAME, IngestConfig, IngestOutcomeError, ingest_dataset
from vlmo_pipeline.data.raw import iter_tsv, open_text

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees


def coco_tree(root: Path, good: int, missing: int) -> None:
    entries = []
    for index in range(good + missing):
        name = f"img{index}.jpg"
        if index < good:
            raw_trees.write(root / "train2014" / name, raw_trees.image_bytes((20 + index, 16)))
        entries.append(raw_trees.karpathy_entry(name, "train", ["a dog", "a cat"], filepath="train2014"))
    raw_trees.write_json(root / "karpathy" / "dataset_coco.json", {"images": entries})


def test_every_record_rejected_fails_with_summary_and_keeps_rejects(tmp_path, capsys):
    coco_tree(tmp_path / "coco", good=0, missing=4)
    out = tmp_path / "out"
    with pytest.raises(IngestOutcomeError) as raised:
        ingest_dataset("coco", tmp_path / "coco", out, IngestConfig(workers=0), show_progress=False)
    message = str(raised.value)
    assert "split 'train': every record rejected" in message and "missing_file=4" in message
    assert "coco" in message and "kept 0" in message
    assert not (out / MANIFEST_NAME).exists()
    with pytest.raises(FileNotFoundError):
        load_manifest(out)  # readers see an incomplete dataset, not an empty success
    assert [r["reason"] for r in read_rejects(out)] == ["missing_file"] * 4
    failure = json.loads((out / FAILURE_NAME).read_text())
    assert failure["status"] == "failed" and failure["splits"]["train"]["kept"] == 0
    assert failure["splits"]["train"]["top_reasons"] == {"missing_file": 4}
    assert "FAILED" in capsys.readouterr().out


def test_reject_rate_threshold_and_the_good_rows_stay(tmp_path):
    coco_tree(tmp_path / "coco", good=2, missing=3)  # 60 % of train rejected
    out = tmp_path / "out"
    with pytest.raises(IngestOutcomeError, match=r"reject rate 60\.0% > max_reject_rate 50\.0%"):
        ingest_dataset("coco", tmp_path / "coco", out, IngestConfig(workers=0), show_progress=False)
    shards = sorted(p.name for p in out.glob("train-*.arrow"))
    assert shards, "good rows are kept for inspection"
    # A higher threshold accepts the same input; the next run removes the failure note.
    manifest = ingest_dataset(
        "coco", tmp_path / "coco", out, IngestConfig(workers=0, max_reject_rate=0.6), show_progress=False
    )
    assert manifest["splits"]["train"] == 2 and not (out / FAILURE_NAME).exists()
    assert read_split(out, "train").num_rows == 2


def test_partial_rejects_do_not_count_into_the_rate(tmp_path):
    root = tmp_path / "coco"
    raw_trees.write(root / "train2014" / "a.jpg", raw_trees.image_bytes())
    entry = raw_trees.karpathy_entry("a.jpg", "train", ["fine", "", " ", "", "ok"], filepath="train2014")
    raw_trees.write_json(root / "karpathy" / "dataset_coco.json", {"images": [entry]})
    manifest = ingest_dataset("coco", root, tmp_path / "out", IngestConfig(workers=0), show_progress=False)
    assert manifest["splits"]["train"] == 1 and manifest["rejects"] == 3  # three empty captions, row kept


def test_demo_like_rates_pass_and_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="max_reject_rate"):
        IngestConfig(max_reject_rate=1.5)
    with pytest.raises(ValueError, match="max_image_bytes"):
        IngestConfig(max_image_bytes=0)


# --- line-wise decoding -----------------------------------------------------------------------------------------


def test_cc3m_bad_line_is_one_reject_with_its_real_number(tmp_path, datasamples):
    lines = (datasamples / "cc3m" / "Validation_GCC-1.1.0-Validation.tsv").read_bytes().split(b"\n")[:20]
    lines[10] = b"caf\xe9 au lait in latin-1\thttp://example.invalid/x.jpg"  # line 11
    path = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = list(iter_tsv(path))
    rejects = [i for i in items if not isinstance(i, tuple)]
    assert [(r.record, r.reason) for r in rejects] == [(f"{path.name}:11", "invalid_utf8")]
    assert "byte 3" in rejects[0].detail
    assert [i[0] for i in items if isinstance(i, tuple)] == [n for n in range(1, 21) if n != 11]


def test_text_corpus_bad_line_and_wikitext_tokens_files(tmp_path, datasamples):
    root = tmp_path / "wikitext-2"
    root.mkdir()
    raw = (datasamples / "text" / "wikitext-2-pytorch-examples" / "test.txt").read_bytes()
    lines = raw.split(b"\n")
    bad_index = next(i for i, line in enumerate(lines) if len(line) > 40 and i > 5)
    lines[bad_index] = lines[bad_index][:20] + b"\xff\xfe" + lines[bad_index][20:]
    (root / "wiki.test.tokens").write_bytes(b"\n".join(lines))
    shutil.copy(datasamples / "text" / "wikitext-103-raw" / "wiki.valid.raw", root / "wiki.valid.tokens")
    source = open_text(root, max_caption_chars=1000)
    assert source.splits == ("val", "test")
    items = list(source.items)
    rejects = [i for i in items if hasattr(i, "reason")]
    assert [(r.record, r.reason) for r in rejects] == [(f"wiki.test.tokens:{bad_index + 1}", "invalid_utf8")]
    rows = [i for i in items if not hasattr(i, "reason")]
    test_lines = {int(r.record_id.split(":")[1].split("#")[0]) for r in rows if r.split == "test"}
    assert max(test_lines) > bad_index + 1  # the file goes on after the bad line
    assert any("<unk>" in r.fields["caption"][0] for r in rows)  # tokenized WikiText read like the raw files


def test_nlvr2_bad_line_is_one_reject(tmp_path, datasamples):
    lines = (datasamples / "nlvr2" / "tiny-dev.json").read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"sentence": "', b'"sentence": "\xc3(', 1)
    root = tmp_path / "nlvr2"
    raw_trees.write(root / "dev.json", b"\n".join(lines))
    from vlmo_pipeline.data.raw import iter_nlvr2_lines

    items = list(iter_nlvr2_lines(root / "dev.json"))
    rejects = [i for i in items if not isinstance(i, tuple)]
    assert [(r.record, r.reason) for r in rejects] == [("dev.json:3", "invalid_utf8")]
    assert len(items) == len([line for line in lines if line.strip()])


# --- VQA variants ------------------------------------------------------------------------------------------------


def vqa_tree(root: Path, annotations: list[dict], questions: list[tuple[int, int, str]]) -> Path:
    raw_trees.vqa_files(root / "vqav2", "val2014", questions, annotations)
    for image_id in {q[1] for q in questions}:
        raw_trees.write(
            root / "coco" / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", raw_trees.image_bytes((20 + image_id, 16))
        )
    return root / "vqav2"


def test_vqa_annotation_variants(tmp_path):
    answers = ["two"] * 6 + ["2"] * 4
    full = raw_trees.vqa_annotation(1, 7, answers, major="two", answer_type="number")
    no_major = raw_trees.vqa_annotation(2, 7, ["red"] * 3 + ["blue"] * 7)
    del no_major["multiple_choice_answer"]
    no_types = raw_trees.vqa_annotation(3, 8, ["yes"] * 10)
    del no_types["answer_type"], no_types["question_type"]
    no_image = raw_trees.vqa_annotation(4, 8, ["no"] * 10)
    del no_image["image_id"]
    questions = [(1, 7, "how many?"), (2, 7, "what color?"), (3, 8, "is it?"), (4, 8, "is it not?")]
    raw = vqa_tree(tmp_path, [full, no_major, no_types, no_image], questions)
    manifest = ingest_dataset(
        "vqav2", raw, tmp_path / "out", IngestConfig(workers=0, min_answer_count=1), show_progress=False
    )
    assert manifest["rejects"] == 0
    assert manifest["info"]["derived_multiple_choice_answer"] == 1
    assert manifest["info"]["missing_answer_type"] == 1 and manifest["info"]["missing_image_id"] == 1
    vocab = json.loads((tmp_path / "out" / "answer_vocab.json").read_text())
    assert "blue" in vocab and "red" not in vocab  # derived majority answer
    rows = {r["image_id"]: r for r in read_split(tmp_path / "out", "val").to_pylist()}
    assert rows[7]["question_id"] == [1, 2] and rows[8]["question_id"] == [3, 4]
    assert rows[8]["answer_type"] == ["unknown", "other"]


def test_a_rejected_annotation_does_not_reject_its_question_again(tmp_path):
    good = raw_trees.vqa_annotation(1, 7, ["yes"] * 10)
    broken = raw_trees.vqa_annotation(2, 7, ["no"] * 10)
    broken["answers"] = "not a list"
    mismatch = raw_trees.vqa_annotation(3, 7, ["no"] * 10)
    mismatch["image_id"] = 99
    questions = [(1, 7, "q1?"), (2, 7, "q2?"), (3, 7, "q3?"), (4, 7, "q4 without annotation?")]
    raw = vqa_tree(tmp_path, [good, broken, mismatch], questions)
    ingest_dataset("vqav2", raw, tmp_path / "out", IngestConfig(workers=0, min_answer_count=1), show_progress=False)
    rejects = sorted((r["record"], r["reason"]) for r in read_rejects(tmp_path / "out"))
    assert rejects == [
        ("question 2", "malformed_record"),
        ("question 3", "malformed_record"),
        ("question 4", "unknown_id"),
    ]
