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
from collections import Counter
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
    as_partial,
    check_caption,
    tag_split,
)
from vlmo_pipeline.data.raw.safe_io import iter_json_items, json_prefix_kinds
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
    """question id → ``{image_id, question}`` from a questions file, plus rejects for malformed entries.

    Streamed with ``ijson`` (the official train file is ~80 MB of JSON); only these two fields are kept.
    """
    questions: dict[int, dict] = {}
    rejects = []
    index = -1
    for index, entry in enumerate(iter_json_items(path, "questions.item", QUESTIONS_EXPECTED)):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("question_id"), int)
            and isinstance(entry.get("image_id"), int)
            and "question" in entry
        )
        if not ok:
            rejects.append(
                Reject(
                    f"questions[{index}]",
                    str(path),
                    MALFORMED_RECORD,
                    "needs integer question_id and image_id and a question",
                )
            )
            continue
        questions[entry["question_id"]] = {"image_id": entry["image_id"], "question": entry["question"]}
    if index < 0:
        _require_list(path, "questions", QUESTIONS_EXPECTED, "a VQA questions file")
    return questions, rejects


def _require_list(path: Path, key: str, expected: str, what: str) -> None:
    """RawLayoutError unless ``path`` is an object whose ``key`` is a list (checked when it yielded no item)."""
    kinds = json_prefix_kinds(path, ("", key), expected)
    if kinds.get("") != "start_map" or kinds.get(key) != "start_array":
        raise RawLayoutError(path, f"expected {what} {expected}")


def majority_answer(answers: list[str]) -> str:
    """The most frequent raw answer (ties: the one given first), as VQA's ``multiple_choice_answer`` is defined."""
    return Counter(answers).most_common(1)[0][0]


def load_annotations(
    path: Path, info: dict[str, Any] | None = None, rejected_ids: set[int] | None = None
) -> tuple[list[dict], list[Reject]]:
    """Annotation records (file order) from an annotations file, plus rejects for malformed entries.

    Streamed with ``ijson``; each record is kept compact: ``question_id``, ``image_id`` (None when absent: the
    question's is used), ``multiple_choice_answer`` (derived as the majority of ``answers`` when absent),
    ``answer_type`` ("unknown" when absent) and ``answers`` as the list of raw answer strings. ``info`` (when
    given) counts the derived/filled fields under ``derived_multiple_choice_answer`` / ``missing_answer_type`` /
    ``missing_image_id``. ``rejected_ids`` (when given) receives the question ids of rejected annotations.
    """
    records = []
    rejects = []
    counts = Counter()
    index = -1
    for index, entry in enumerate(iter_json_items(path, "annotations.item", ANNOTATIONS_EXPECTED)):
        problem = _annotation_problem(entry)
        if problem:
            record = (
                f"question {entry['question_id']}"
                if isinstance(entry, dict) and isinstance(entry.get("question_id"), int)
                else f"annotations[{index}]"
            )
            rejects.append(Reject(record, str(path), MALFORMED_RECORD, problem))
            if rejected_ids is not None and record.startswith("question "):
                rejected_ids.add(entry["question_id"])
            continue
        answers = [answer["answer"] for answer in entry["answers"]]
        major = entry.get("multiple_choice_answer")
        if not isinstance(major, str):
            major = majority_answer(answers)
            counts["derived_multiple_choice_answer"] += 1
        answer_type = entry.get("answer_type")
        if not isinstance(answer_type, str):
            answer_type = "unknown"
            counts["missing_answer_type"] += 1
        image_id = entry.get("image_id")
        if image_id is None:
            counts["missing_image_id"] += 1
        records.append(
            {
                "question_id": entry["question_id"],
                "image_id": image_id,
                "multiple_choice_answer": major,
                "answer_type": answer_type,
                "answers": answers,
            }
        )
    if index < 0:
        _require_list(path, "annotations", ANNOTATIONS_EXPECTED, "a VQA annotations file")
    if info is not None:
        for key, value in counts.items():
            info[key] = info.get(key, 0) + value
    return records, rejects


def _annotation_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "entry is not an object"
    if not isinstance(entry.get("question_id"), int):
        return "needs an integer question_id"
    answers = entry.get("answers")
    if not isinstance(answers, list) or not all(
        isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers
    ):
        return 'needs a list of {"answer": str} answers'
    major = entry.get("multiple_choice_answer")
    if major is not None and not isinstance(major, str):
        return "multiple_choice_answer is not a string"
    if major is None and not answers:
        return "no multiple_choice_answer and no answers to derive it from"
    image_id = entry.get("image_id")
    if image_id is not None and not isinstance(image_id, int):
        return "image_id is not an integer"
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
    question_files = {
        split: Path(questions_files[split])
        if questions_files and split in questions_files
        else questions_path(root, split)
        for split in VQA_SPLITS
    }
    annotation_files = {
        split: Path(annotations_files[split])
        if annotations_files and split in annotations_files
        else annotations_path(root, split)
        for split in ANNOTATED_SPLITS
    }
    for split, path in {**(questions_files or {}), **(annotations_files or {})}.items():
        if split not in VQA_SPLITS:
            raise ValueError(f"unknown VQA split {split!r} for {path}; expected one of {VQA_SPLITS}")
    splits = tuple(split for split in VQA_SPLITS if question_files[split].is_file())
    if not splits:
        raise RawLayoutError(
            root, "no VQA v2 questions file: expected " + ", ".join(questions_path(root, s).name for s in VQA_SPLITS)
        )
    for split in splits:
        if split in ANNOTATED_SPLITS and not annotation_files[split].is_file():
            raise RawLayoutError(
                annotation_files[split],
                f"missing annotations for the {split} questions "
                f"{question_files[split].name} (expected {ANNOTATIONS_EXPECTED})",
            )

    parsed: dict[str, tuple] = {}
    fills: dict[str, int] = {}
    for split in splits:
        questions, rejects = load_questions(question_files[split])
        split_annotations: list[dict] = []
        rejected_ids: set[int] = set()
        if split in ANNOTATED_SPLITS:
            split_annotations, annotation_rejects = load_annotations(annotation_files[split], fills, rejected_ids)
            rejects += annotation_rejects
        parsed[split] = (questions, split_annotations, rejects, rejected_ids)

    major_answers = [a["multiple_choice_answer"] for split in vocab_splits if split in parsed for a in parsed[split][1]]
    vocab = build_answer_vocab(major_answers, min_answer_count)
    answer_to_label = {answer: label for label, answer in enumerate(vocab)}
    sources = [str(question_files[s]) for s in splits] + [
        str(annotation_files[s]) for s in splits if s in ANNOTATED_SPLITS
    ]
    total = sum(len({q["image_id"] for q in parsed[s][0].values()}) for s in splits)
    info = {
        "answer_vocab_size": len(vocab),
        "vocab_splits": [s for s in vocab_splits if s in parsed],
        "min_answer_count": min_answer_count,
        "image_root": str(images),
        **fills,
    }
    rest_val: set[int] = set()
    if rest_val_images:
        if "val" not in parsed:
            raise RawLayoutError(
                question_files["val"],
                f"rest_val_images={rest_val_images} carves the val split, but there is no val questions file",
            )
        rest_val = _choose_rest_val(
            parsed["val"],
            answer_to_label,
            str(question_files["val"]),
            str(annotation_files["val"]),
            max_caption_chars,
            rest_val_images,
            rest_val_seed,
        )
        splits = tuple(s for split in splits for s in (CARVED_VAL_SPLITS if split == "val" else (split,)))
        info.update(rest_val_images=rest_val_images, rest_val_seed=rest_val_seed)
    items = _iter_vqav2(parsed, question_files, annotation_files, answer_to_label, images, max_caption_chars, rest_val)
    return RawSource(items, splits, sources, total=total, artifacts={"answer_vocab.json": vocab}, info=info)


def _choose_rest_val(
    parsed_val: tuple,
    answer_to_label: dict[str, int],
    question_source: str,
    annotation_source: str,
    max_caption_chars: int,
    count: int,
    seed: int,
) -> set[int]:
    """Image ids of ``rest_val``: a seeded sample of ``count`` from the sorted ids of the val images that have an
    answerable question (the rows the official val table keeps: the train policy drops the others)."""
    questions, split_annotations = parsed_val[:2]
    answered, _ = _attach_answers(questions, split_annotations, annotation_source)
    eligible = [
        image_id
        for image_id, question_ids in _questions_by_image(questions)
        if _image_row(
            "train",
            image_id,
            question_ids,
            questions,
            answered,
            answer_to_label,
            question_source,
            annotation_source,
            max_caption_chars,
        )[0]
        is not None
    ]
    if count >= len(eligible):
        raise ValueError(
            f"rest_val_images={count} leaves nothing for trainable_val: val has {len(eligible)} "
            "images with an answerable question"
        )
    return set(random.Random(seed).sample(eligible, count))


def _attach_answers(
    questions: dict[int, dict], split_annotations: list[dict], annotation_source: str
) -> tuple[dict[int, dict | None], list[Reject]]:
    """question id → annotation; annotations for unknown questions or with another image id are rejected (a
    question whose annotation was rejected maps to None, so it is not rejected a second time as ``unknown_id``)."""
    answered: dict[int, dict | None] = {}
    rejects = []
    for annotation in split_annotations:
        question_id = annotation["question_id"]
        question = questions.get(question_id)
        if question is None:
            rejects.append(
                Reject(
                    f"question {question_id}",
                    annotation_source,
                    UNKNOWN_ID,
                    "annotation for a question id not in the questions file",
                )
            )
            continue
        if annotation.get("image_id") not in (None, question["image_id"]):
            rejects.append(
                Reject(
                    f"question {question_id}",
                    annotation_source,
                    MALFORMED_RECORD,
                    f"image_id {annotation.get('image_id')} differs from the question's {question['image_id']}",
                )
            )
            answered[question_id] = None
            continue
        answered[question_id] = annotation
    return answered, rejects


def _questions_by_image(questions: dict[int, dict]) -> list[tuple[int, list[int]]]:
    """(image id, its question ids sorted), sorted by image id."""
    by_image: dict[int, list[int]] = {}
    for question_id in sorted(questions):
        by_image.setdefault(questions[question_id]["image_id"], []).append(question_id)
    return sorted(by_image.items())


def _iter_vqav2(
    parsed, question_files, annotation_files, answer_to_label, images: Path, max_caption_chars: int, rest_val: set[int]
) -> Iterator[RawItem]:
    for split, parsed_split in parsed.items():
        yield from tag_split(
            _iter_vqav2_split(
                split,
                parsed_split,
                question_files,
                annotation_files,
                answer_to_label,
                images,
                max_caption_chars,
                rest_val,
            ),
            split,
        )


def _iter_vqav2_split(
    split,
    parsed_split,
    question_files,
    annotation_files,
    answer_to_label,
    images: Path,
    max_caption_chars: int,
    rest_val: set[int],
) -> Iterator[RawItem]:
    """One split's image rows; every reject here loses one question (partial), not a whole image row."""
    questions, split_annotations, rejects, rejected_ids = parsed_split
    yield from map(as_partial, rejects)
    question_source = str(question_files[split])
    annotation_source = str(annotation_files[split]) if split in ANNOTATED_SPLITS else ""
    answered, answer_rejects = _attach_answers(questions, split_annotations, annotation_source)
    for question_id in rejected_ids:  # their malformed annotation is their reject; none for the question
        answered.setdefault(question_id, None)
    yield from map(as_partial, answer_rejects)
    for image_id, question_ids in _questions_by_image(questions):
        row = _image_row(
            split,
            image_id,
            question_ids,
            questions,
            answered,
            answer_to_label,
            question_source,
            annotation_source,
            max_caption_chars,
        )
        fields, row_rejects = row
        yield from map(as_partial, row_rejects)
        if fields is None:
            continue
        if split == "val" and rest_val:
            fields["split"] = "rest_val" if image_id in rest_val else "trainable_val"
        subset = SUBSET_OF_SPLIT[split]
        image_path = images / subset / f"COCO_{subset}_{image_id:012d}.jpg"
        yield RawRecord(
            record_id=f"image {image_id}",
            split=fields["split"],
            source=question_source,
            fields=fields,
            images={"image": ImageSource(str(image_path), root=str(images))},
        )


def _image_row(
    split,
    image_id,
    question_ids,
    questions,
    answered,
    answer_to_label,
    question_source,
    annotation_source,
    max_caption_chars,
) -> tuple[dict | None, list[Reject]]:
    """Build the list columns of one image; returns (fields or None when no question survives, rejects)."""
    rejects: list[Reject] = []
    columns: dict[str, list] = {
        key: [] for key in ("questions", "answers", "answer_labels", "answer_scores", "question_id", "answer_type")
    }
    for question_id in question_ids:
        record = f"question {question_id}"
        if split in ANNOTATED_SPLITS and question_id in answered and answered[question_id] is None:
            continue  # its annotation was rejected already: one reject per question
        text, reject = check_caption(questions[question_id]["question"], record, question_source, max_caption_chars)
        if reject is not None:
            rejects.append(reject)
            continue
        if split in ANNOTATED_SPLITS:
            annotation = answered.get(question_id)
            if annotation is None:
                rejects.append(Reject(record, annotation_source, UNKNOWN_ID, "question id has no annotation"))
                continue
            raw_answers = list(annotation["answers"])
            labels, scores = score_answers(raw_answers, answer_to_label)
            if not labels and split == "train":
                rejects.append(
                    Reject(
                        record,
                        annotation_source,
                        ANSWER_NOT_IN_VOCAB,
                        "no annotator answer is in the answer vocabulary",
                    )
                )
                continue
            answer_type = annotation["answer_type"]
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
