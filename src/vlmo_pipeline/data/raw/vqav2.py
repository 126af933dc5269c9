"""VQA v2: questions + annotations → one row per image with per-question list columns (spec §5.3, §6).

Files under ``<root>/``: ``v2_OpenEnded_mscoco_{train2014,val2014,test2015}_questions.json`` and
``v2_mscoco_{train2014,val2014}_annotations.json``. Images are COCO's:
``<image_root>/{train2014,val2014,test2015}/COCO_<subset>_%012d.jpg`` (``image_root`` defaults to
``<root>/../coco``). Explicit file paths can replace the standard names (``questions_files`` /
``annotations_files``, split → path), e.g. for re-packaged excerpts with other names.

Choices (documented in docs/data_layout.md):

* answer vocabulary = normalised ``multiple_choice_answer`` over the annotations of ``vocab_splits`` (default
  train + val, as the official vocabulary), kept when seen ≥ ``min_answer_count`` times, label ids in first-seen
  order; written as ``answer_vocab.json``;
* a train question without any in-vocabulary answer is dropped (reject ``answer_not_in_vocab``); in val it is
  kept with empty labels (score 0), so the val metric is measured on every question, not a filtered subset;
* rows sorted by image id, questions by question id; the test split (questions only) has empty answer lists and
  ``answer_type`` "";
* ``rest_val_images`` > 0 carves val the way the official writer does (spec §5.3, §6): ``rest_val`` = that many
  val images, ``trainable_val`` = every other val image, and no ``val`` split is written. The official writer
  took the last 1,000 rows of a table shuffled with an unseeded RNG, a table from which questions without an
  in-vocabulary answer had been dropped; here the images are a seeded sample (``rest_val_seed``) of the sorted
  ids of the val images with at least one such answerable question, so every rest_val image is scored and a
  re-run picks the same ones. Both halves keep val's question policy (unanswerable questions kept with empty
  labels; training and scoring leave them out when they load the rows).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.raw.records import (
    ANSWER_NOT_IN_VOCAB,
    MALFORMED_RECORD,
    UNKNOWN_ID,
    ImageSource,
    RawItem,
    RawLayoutError,
    RawRecord,
    RawSource,
    Reject,
    check_caption,
    load_json,
)
from vlmo_pipeline.data.raw.vqa_answers import build_answer_vocab, score_answers

VQA_SPLITS = ("train", "val", "test")
SUBSET_OF_SPLIT = {"train": "train2014", "val": "val2014", "test": "test2015"}
ANNOTATED_SPLITS = ("train", "val")
#: Output splits that replace ``val`` when it is carved (``rest_val_images`` > 0), in the official table names.
CARVED_VAL_SPLITS = ("trainable_val", "rest_val")
QUESTIONS_EXPECTED = '{"questions": [{"image_id", "question", "question_id"}, ...], ...}'
ANNOTATIONS_EXPECTED = (
    '{"annotations": [{"question_id", "image_id", "multiple_choice_answer", "answer_type", '
    '"answers": [{"answer", ...} x10]}, ...], ...}'
)


def questions_path(root: Path, split: str) -> Path:
    return root / f"v2_OpenEnded_mscoco_{SUBSET_OF_SPLIT[split]}_questions.json"


def annotations_path(root: Path, split: str) -> Path:
    return root / f"v2_mscoco_{SUBSET_OF_SPLIT[split]}_annotations.json"


def load_questions(path: Path) -> tuple[dict[int, dict], list[Reject]]:
    """question id → ``{image_id, question}`` from a questions file, plus rejects for malformed entries."""
    document = load_json(path, QUESTIONS_EXPECTED)
    if not isinstance(document, dict) or not isinstance(document.get("questions"), list):
        raise RawLayoutError(path, f"expected a VQA questions file {QUESTIONS_EXPECTED}")
    questions: dict[int, dict] = {}
    rejects = []
    for index, entry in enumerate(document["questions"]):
        ok = isinstance(entry, dict) and isinstance(entry.get("question_id"), int) and isinstance(
            entry.get("image_id"), int) and "question" in entry
        if not ok:
            rejects.append(Reject(f"questions[{index}]", str(path), MALFORMED_RECORD,
                                  "needs integer question_id and image_id and a question"))
            continue
        questions[entry["question_id"]] = {"image_id": entry["image_id"], "question": entry["question"]}
    return questions, rejects


def load_annotations(path: Path) -> tuple[list[dict], list[Reject]]:
    """Annotation records (file order) from an annotations file, plus rejects for malformed entries."""
    document = load_json(path, ANNOTATIONS_EXPECTED)
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise RawLayoutError(path, f"expected a VQA annotations file {ANNOTATIONS_EXPECTED}")
    records = []
    rejects = []
    for index, entry in enumerate(document["annotations"]):
        problem = _annotation_problem(entry)
        if problem:
            record = f"question {entry['question_id']}" if isinstance(entry, dict) and isinstance(
                entry.get("question_id"), int) else f"annotations[{index}]"
            rejects.append(Reject(record, str(path), MALFORMED_RECORD, problem))
            continue
        records.append(entry)
    return records, rejects


def _annotation_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "entry is not an object"
    if not isinstance(entry.get("question_id"), int):
        return "needs an integer question_id"
    if not isinstance(entry.get("multiple_choice_answer"), str):
        return "needs a string multiple_choice_answer"
    answers = entry.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, dict) and isinstance(a.get("answer"), str)
                                                for a in answers):
        return 'needs a list of {"answer": str} answers'
    return ""


def open_vqav2(
    root: str | Path,
    *,
    max_caption_chars: int,
    image_root: str | Path | None = None,
    min_answer_count: int = 9,
    vocab_splits: tuple[str, ...] = ANNOTATED_SPLITS,
    questions_files: dict[str, str | Path] | None = None,
    annotations_files: dict[str, str | Path] | None = None,
    rest_val_images: int = 0,
    rest_val_seed: int = 0,
) -> RawSource:
    """Parse VQA v2 questions/annotations, build the answer vocabulary, return a streaming :class:`RawSource`.

    ``RawSource.artifacts["answer_vocab.json"]`` holds the vocabulary (list of answers, index = label id).
    ``rest_val_images`` > 0 writes val as ``trainable_val`` + ``rest_val`` (that many images, drawn with
    ``rest_val_seed``) instead of ``val`` (module docstring).
    """
    if rest_val_images < 0:
        raise ValueError(f"rest_val_images must be >= 0 (0 = keep val whole), got {rest_val_images}")
    root = Path(root)
    images = Path(image_root) if image_root is not None else root.parent / "coco"
    question_files = {split: Path(questions_files[split]) if questions_files and split in questions_files
                      else questions_path(root, split) for split in VQA_SPLITS}
    annotation_files = {split: Path(annotations_files[split]) if annotations_files and split in annotations_files
                        else annotations_path(root, split) for split in ANNOTATED_SPLITS}
    for split, path in {**(questions_files or {}), **(annotations_files or {})}.items():
        if split not in VQA_SPLITS:
            raise ValueError(f"unknown VQA split {split!r} for {path}; expected one of {VQA_SPLITS}")
    splits = tuple(split for split in VQA_SPLITS if question_files[split].is_file())
    if not splits:
        raise RawLayoutError(root, "no VQA v2 questions file: expected "
                             + ", ".join(questions_path(root, s).name for s in VQA_SPLITS))
    for split in splits:
        if split in ANNOTATED_SPLITS and not annotation_files[split].is_file():
            raise RawLayoutError(annotation_files[split], f"missing annotations for the {split} questions "
                                 f"{question_files[split].name} (expected {ANNOTATIONS_EXPECTED})")

    parsed: dict[str, tuple] = {}
    for split in splits:
        questions, rejects = load_questions(question_files[split])
        split_annotations: list[dict] = []
        if split in ANNOTATED_SPLITS:
            split_annotations, annotation_rejects = load_annotations(annotation_files[split])
            rejects += annotation_rejects
        parsed[split] = (questions, split_annotations, rejects)

    major_answers = [a["multiple_choice_answer"] for split in vocab_splits if split in parsed
                     for a in parsed[split][1]]
    vocab = build_answer_vocab(major_answers, min_answer_count)
    answer_to_label = {answer: label for label, answer in enumerate(vocab)}
    sources = [str(question_files[s]) for s in splits] + [str(annotation_files[s]) for s in splits
                                                           if s in ANNOTATED_SPLITS]
    total = sum(len({q["image_id"] for q in parsed[s][0].values()}) for s in splits)
    info = {"answer_vocab_size": len(vocab), "vocab_splits": [s for s in vocab_splits if s in parsed],
            "min_answer_count": min_answer_count, "image_root": str(images)}
    rest_val: set[int] = set()
    if rest_val_images:
        if "val" not in parsed:
            raise RawLayoutError(question_files["val"], f"rest_val_images={rest_val_images} carves the val split, "
                                 "but there is no val questions file")
        rest_val = _choose_rest_val(parsed["val"], answer_to_label, str(question_files["val"]),
                                    str(annotation_files["val"]), max_caption_chars, rest_val_images, rest_val_seed)
        splits = tuple(s for split in splits for s in (CARVED_VAL_SPLITS if split == "val" else (split,)))
        info.update(rest_val_images=rest_val_images, rest_val_seed=rest_val_seed)
    items = _iter_vqav2(parsed, question_files, annotation_files, answer_to_label, images, max_caption_chars,
                        rest_val)
    return RawSource(items, splits, sources, total=total, artifacts={"answer_vocab.json": vocab}, info=info)


def _choose_rest_val(parsed_val: tuple, answer_to_label: dict[str, int], question_source: str,
                     annotation_source: str, max_caption_chars: int, count: int, seed: int) -> set[int]:
    """Image ids of ``rest_val``: a seeded sample of ``count`` from the sorted ids of the val images that have an
    answerable question (the rows the official val table keeps: the train policy drops the others)."""
    questions, split_annotations, _ = parsed_val
    answered, _ = _attach_answers(questions, split_annotations, annotation_source)
    eligible = [image_id for image_id, question_ids in _questions_by_image(questions)
                if _image_row("train", image_id, question_ids, questions, answered, answer_to_label, question_source,
                              annotation_source, max_caption_chars)[0] is not None]
    if count >= len(eligible):
        raise ValueError(f"rest_val_images={count} leaves nothing for trainable_val: val has {len(eligible)} "
                         "images with an answerable question")
    return set(random.Random(seed).sample(eligible, count))


def _attach_answers(questions: dict[int, dict], split_annotations: list[dict],
                    annotation_source: str) -> tuple[dict[int, dict], list[Reject]]:
    """question id → annotation; annotations for unknown questions or with another image id are rejected."""
    answered: dict[int, dict] = {}
    rejects = []
    for annotation in split_annotations:
        question_id = annotation["question_id"]
        question = questions.get(question_id)
        if question is None:
            rejects.append(Reject(f"question {question_id}", annotation_source, UNKNOWN_ID,
                                  "annotation for a question id not in the questions file"))
            continue
        if annotation.get("image_id", question["image_id"]) != question["image_id"]:
            rejects.append(Reject(f"question {question_id}", annotation_source, MALFORMED_RECORD,
                                  f"image_id {annotation.get('image_id')} differs from the question's "
                                  f"{question['image_id']}"))
            continue
        answered[question_id] = annotation
    return answered, rejects


def _questions_by_image(questions: dict[int, dict]) -> list[tuple[int, list[int]]]:
    """(image id, its question ids sorted), sorted by image id."""
    by_image: dict[int, list[int]] = {}
    for question_id in sorted(questions):
        by_image.setdefault(questions[question_id]["image_id"], []).append(question_id)
    return sorted(by_image.items())


def _iter_vqav2(parsed, question_files, annotation_files, answer_to_label, images: Path,
                max_caption_chars: int, rest_val: set[int]) -> Iterator[RawItem]:
    for split, (questions, split_annotations, rejects) in parsed.items():
        yield from rejects
        question_source = str(question_files[split])
        annotation_source = str(annotation_files[split]) if split in ANNOTATED_SPLITS else ""
        answered, answer_rejects = _attach_answers(questions, split_annotations, annotation_source)
        yield from answer_rejects
        for image_id, question_ids in _questions_by_image(questions):
            row = _image_row(split, image_id, question_ids, questions, answered, answer_to_label,
                             question_source, annotation_source, max_caption_chars)
            fields, row_rejects = row
            yield from row_rejects
            if fields is None:
                continue
            if split == "val" and rest_val:
                fields["split"] = "rest_val" if image_id in rest_val else "trainable_val"
            subset = SUBSET_OF_SPLIT[split]
            image_path = images / subset / f"COCO_{subset}_{image_id:012d}.jpg"
            yield RawRecord(record_id=f"image {image_id}", split=fields["split"], source=question_source, fields=fields,
                            images={"image": ImageSource(str(image_path))})


def _image_row(split, image_id, question_ids, questions, answered, answer_to_label, question_source,
               annotation_source, max_caption_chars) -> tuple[dict | None, list[Reject]]:
    """Build the list columns of one image; returns (fields or None when no question survives, rejects)."""
    rejects: list[Reject] = []
    columns: dict[str, list] = {key: [] for key in
                                ("questions", "answers", "answer_labels", "answer_scores", "question_id",
                                 "answer_type")}
    for question_id in question_ids:
        record = f"question {question_id}"
        text, reject = check_caption(questions[question_id]["question"], record, question_source,
                                     max_caption_chars)
        if reject is not None:
            rejects.append(reject)
            continue
        if split in ANNOTATED_SPLITS:
            annotation = answered.get(question_id)
            if annotation is None:
                rejects.append(Reject(record, annotation_source, UNKNOWN_ID, "question id has no annotation"))
                continue
            raw_answers = [answer["answer"] for answer in annotation["answers"]]
            labels, scores = score_answers(raw_answers, answer_to_label)
            if not labels and split == "train":
                rejects.append(Reject(record, annotation_source, ANSWER_NOT_IN_VOCAB,
                                      "no annotator answer is in the answer vocabulary"))
                continue
            answer_type = str(annotation.get("answer_type", ""))
        else:
            raw_answers, labels, scores, answer_type = [], [], [], ""
        columns["questions"].append(text)
        columns["answers"].append(raw_answers)
        columns["answer_labels"].append(labels)
        columns["answer_scores"].append(scores)
        columns["question_id"].append(question_id)
        columns["answer_type"].append(answer_type)
    if not columns["questions"]:
        return None, rejects
    return {**columns, "image_id": image_id, "split": split}, rejects
