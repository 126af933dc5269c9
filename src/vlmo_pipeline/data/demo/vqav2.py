"""The demo's VQAv2: questions about the COCO scenes, answered from their scene graphs, and ten annotator
answers each, in the official question and annotation files (the layout :mod:`vlmo_pipeline.data.raw.vqav2`
reads); also the question families the evaluation reports per family."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.language import article, plural
from vlmo_pipeline.data.demo.output import DEMO_HOST, atomic_write_json
from vlmo_pipeline.data.demo.scene import COLOR_NAMES, COLORS, SHAPES, Scene

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World

# Questions per VQA image (real VQAv2: 5.4 on average). The demo asks more, so a tiny model sees enough distinct
# questions per family in a short fine-tune to learn to look at the image instead of a per-question prior.
VQA_QUESTIONS_PER_IMAGE = (8, 10)


@dataclass(frozen=True)
class QuestionAnswer:
    question: str
    answer: str
    answer_type: str  # "yes/no" | "number" | "other"
    question_type: str


Candidates = dict[str, dict[str, list[QuestionAnswer]]]  # form -> answer -> questions


def _add(pools: Candidates, form: str, qa: QuestionAnswer) -> None:
    pools.setdefault(form, {}).setdefault(qa.answer, []).append(qa)


def _yes_no_candidates(scene: Scene, rng: random.Random) -> Candidates:
    """Presence questions by form and answer; the sampler picks a form, then yes or no 50/50, then a question."""
    pools: Candidates = {}
    for color in COLOR_NAMES:
        for shape in SHAPES:
            answer = "yes" if scene.count(color, shape) else "no"
            _add(
                pools,
                "color shape",
                QuestionAnswer(f"Is there {article(color)} {color} {shape}?", answer, "yes/no", "is there a"),
            )
    for shape in SHAPES:
        answer = "yes" if scene.count(shape=shape) else "no"
        _add(pools, "shape", QuestionAnswer(f"Are there any {plural(shape)}?", answer, "yes/no", "are there"))
    for color in COLOR_NAMES:
        answer = "yes" if scene.count(color=color) else "no"
        _add(
            pools, "color", QuestionAnswer(f"Is there {article(color)} {color} shape?", answer, "yes/no", "is there a")
        )
    return pools


def _number_candidates(scene: Scene) -> Candidates:
    pools: Candidates = {}

    def add(form: str, question: str, count: int) -> None:
        _add(pools, form, QuestionAnswer(question, str(count), "number", "how many"))

    add("total", "How many shapes are there?", len(scene.objects))
    add("total", "How many objects are in the picture?", len(scene.objects))
    for shape in SHAPES:
        add("shape", f"How many {plural(shape)} are there?", scene.count(shape=shape))
    for color in COLOR_NAMES:
        add("color", f"How many {color} shapes are there?", scene.count(color=color))
    return pools


def _other_candidates(scene: Scene) -> Candidates:
    pools: Candidates = {}

    def add(form: str, question: str, answer: str, question_type: str) -> None:
        _add(pools, form, QuestionAnswer(question, answer, "other", question_type))

    for shape in SHAPES:
        matches = scene.matching(shape=shape)
        if len(matches) == 1:  # "the <shape>" must refer to exactly one object
            add("color of shape", f"What color is the {shape}?", matches[0].color, "what color is the")
            add("color of shape", f"What is the color of the {shape}?", matches[0].color, "what is the color of the")
    for color in COLOR_NAMES:
        matches = scene.matching(color=color)
        if len(matches) == 1:
            add("shape of color", f"What shape is the {color} object?", matches[0].shape, "what shape is the")
            add("shape of color", f"What shape is the {color} one?", matches[0].shape, "what shape is the")
    return pools


#: Question kinds (VQA answer types) and how often each is asked. The demo's questions are all about what the
#: picture shows (presence, colour, shape, count); position and relation questions are left out: the tiny model
#: has no absolute position embedding (relative position bias only, as VLMo-Base), and in a few hundred CPU steps
#: it never learned them (see "Demo tuning notes" in docs/models.md).
KIND_WEIGHTS = {"yes/no": 0.3, "number": 0.3, "other": 0.4}

#: Question families of the demo world (:func:`question_family`), reported per family by the evaluation.
QUESTION_FAMILIES: tuple[str, ...] = ("presence", "colour", "shape", "count")
_FAMILY_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("presence", re.compile(r"^(is there|are there any) ")),
    ("colour", re.compile(r"^(what color is the|what is the color of the) ")),
    ("shape", re.compile(r"^what shape is the ")),
    ("count", re.compile(r"^how many ")),
)


def question_family(question: str) -> str:
    """The demo-world family of a VQA question (one of :data:`QUESTION_FAMILIES`), or ``"unmatched"`` for a
    question no demo template writes (real VQA data)."""
    text = " ".join(question.lower().split())
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.match(text):
            return family
    return "unmatched"


def vqa_questions(scene: Scene, rng: random.Random, n_questions: int) -> list[QuestionAnswer]:
    """Up to ``n_questions`` distinct questions about one scene.

    Sampling goes kind -> form -> answer -> question, with the form drawn uniformly and the answer drawn uniformly
    among the answers the scene offers for that form (yes/no forms need both answers, so yes/no is 50/50 within
    every form). Neither the question's wording nor its form then tells the answer.
    """
    chosen: list[QuestionAnswer] = []
    asked: set[str] = set()
    for _ in range(6 * n_questions):
        if len(chosen) == n_questions:
            break
        kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
        if kind == "yes/no":
            pools = _yes_no_candidates(scene, rng)
        elif kind == "number":
            pools = _number_candidates(scene)
        else:
            pools = _other_candidates(scene)
        usable = {}
        for form, by_answer in pools.items():
            by_answer = {answer: [qa for qa in qas if qa.question not in asked] for answer, qas in by_answer.items()}
            by_answer = {answer: qas for answer, qas in by_answer.items() if qas}
            if by_answer and (kind != "yes/no" or len(by_answer) == 2):
                usable[form] = by_answer
        if not usable:
            continue
        by_answer = usable[rng.choice(sorted(usable))]
        qa = rng.choice(by_answer[rng.choice(sorted(by_answer))])
        asked.add(qa.question)
        chosen.append(qa)
    return chosen


def annotator_answers(qa: QuestionAnswer, rng: random.Random) -> list[tuple[str, str]]:
    """Ten (answer, confidence) pairs: at least 7 correct; the rest plausible annotator noise."""
    n_wrong = rng.choices([0, 1, 2, 3], weights=[0.55, 0.28, 0.12, 0.05])[0]
    wrong_slots = set(rng.sample(range(10), n_wrong))
    answers = []
    for slot in range(10):
        if slot in wrong_slots:
            answer = _wrong_answer(qa, rng)
            confidence = rng.choices(["yes", "maybe", "no"], weights=[0.5, 0.4, 0.1])[0]
        else:
            answer = qa.answer
            confidence = rng.choices(["yes", "maybe", "no"], weights=[0.88, 0.11, 0.01])[0]
        answers.append((answer, confidence))
    return answers


def _wrong_answer(qa: QuestionAnswer, rng: random.Random) -> str:
    if qa.answer_type == "yes/no":
        return rng.choice(["no" if qa.answer == "yes" else "yes", "not sure"])
    if qa.answer_type == "number":
        value = int(qa.answer)
        return str(max(0, value + rng.choice([-1, 1]))) if value > 0 else "1"
    vocabulary = COLOR_NAMES if qa.answer in COLORS else SHAPES
    return rng.choice([word for word in vocabulary if word != qa.answer])


VQA_INFO = {
    "description": "Demo world (synthetic shapes) in VQA v2.0 format",
    "url": f"{DEMO_HOST}/vqa",
    "version": "2.0",
    "year": 2017,
    "contributor": "vlmo_pipeline demo_world",
    "date_created": "2017-04-26 17:00:44",
}
VQA_LICENSE = {
    "url": "http://creativecommons.org/licenses/by/4.0/",
    "name": "Creative Commons Attribution 4.0 International License",
}


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    """Questions about the COCO images (train2014 -> VQA train, val2014 -> VQA val), answered from their scenes."""
    if not world.coco_images:
        raise RuntimeError("the VQAv2 writer needs the COCO scenes: generate coco first")
    coco_images = world.coco_images
    splits = {}
    for folder, split in (("train2014", "train"), ("val2014", "val")):
        questions, annotations = [], []
        for _, image_id, scene in sorted((item for item in coco_images if item[0] == folder), key=lambda item: item[1]):
            for number, qa in enumerate(vqa_questions(scene, rng, rng.randint(*VQA_QUESTIONS_PER_IMAGE))):
                question_id = image_id * 1000 + number
                questions.append({"image_id": image_id, "question": qa.question, "question_id": question_id})
                answers = annotator_answers(qa, rng)
                annotations.append(
                    {
                        "question_type": qa.question_type,
                        "multiple_choice_answer": _majority(answers, qa.answer),
                        "answers": [
                            {"answer": answer, "answer_confidence": confidence, "answer_id": answer_id}
                            for answer_id, (answer, confidence) in enumerate(answers, start=1)
                        ],
                        "image_id": image_id,
                        "answer_type": qa.answer_type,
                        "question_id": question_id,
                    }
                )
        atomic_write_json(
            root / f"v2_OpenEnded_mscoco_{folder}_questions.json",
            {
                "info": VQA_INFO,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": VQA_LICENSE,
                "data_subtype": folder,
                "questions": questions,
            },
        )
        atomic_write_json(
            root / f"v2_mscoco_{folder}_annotations.json",
            {
                "info": VQA_INFO,
                "license": VQA_LICENSE,
                "data_subtype": folder,
                "annotations": annotations,
                "data_type": "mscoco",
            },
        )
        answer_types = Counter(a["answer_type"] for a in annotations)
        yes_no = Counter(a["multiple_choice_answer"] for a in annotations if a["answer_type"] == "yes/no")
        splits[split] = {
            "images": len({q["image_id"] for q in questions}),
            "questions": len(questions),
            "answer_types": dict(sorted(answer_types.items())),
            "yes_no": dict(sorted(yes_no.items())),
        }
    return {"splits": splits}


def _majority(answers: list[tuple[str, str]], correct: str) -> str:
    counts = Counter(answer for answer, _ in answers)
    best = max(counts.values())
    return correct if counts[correct] == best else sorted(a for a, c in counts.items() if c == best)[0]
