"""The demo's NLVR2: statements about image pairs with their truth functions, sets of four pairs that make each
statement true for exactly two, the PNG images and the JSON-lines split files (the layout
:mod:`vlmo_pipeline.data.raw.nlvr2` reads)."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.language import article, plural
from vlmo_pipeline.data.demo.output import DEMO_HOST, atomic_write_bytes, atomic_write_text
from vlmo_pipeline.data.demo.scene import COLOR_NAMES, SHAPES, Focus, Scene, encode_png, render_scene, sample_scene

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World


@dataclass(frozen=True)
class Statement:
    """A sentence about an image pair, its truth function and the attributes a scene sampler should favour."""

    sentence: str
    holds: Callable[[Scene, Scene], bool]
    focus: tuple[Focus, ...]
    synset: str


def _side(scenes: tuple[Scene, Scene], side: str) -> Scene:
    return scenes[0] if side == "left" else scenes[1]


def random_statement(rng: random.Random, hint: Scene | None = None) -> Statement:
    """One NLVR2 statement from seven templates; ``hint`` (a scene) biases attributes toward ones it contains.

    The templates combine what each image shows with the logic of the pair: one side (left/right), both images
    (and), at least one image (or), and one count comparison. They name a colour, or a colour with a shape:
    at 64 pixels the tiny demo model tells colours apart far more reliably than shapes alone, and templates built
    on shape alone, exact counts, spatial relations or negation ("neither", "exactly one") stayed at chance after
    a demo-length fine-tune (see "Demo tuning notes" in docs/models.md).
    """
    if hint is not None and hint.objects and rng.random() < 0.7:
        obj = rng.choice(hint.objects)
        color, shape = obj.color, obj.shape
    else:
        color, shape = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
    side = rng.choice(["left", "right"])
    other = "right" if side == "left" else "left"
    template = rng.randrange(7)

    if template == 0:
        sentence = rng.choice(
            [
                f"The {side} image contains {article(color)} {color} shape.",
                f"There is {article(color)} {color} shape in the {side} image.",
            ]
        )
        return Statement(
            sentence, lambda left, right: _side((left, right), side).count(color=color) > 0, ((color, None),), "shape"
        )
    if template == 1:
        sentence = f"The {side} image shows {article(color)} {color} {shape}."
        return Statement(
            sentence, lambda left, right: _side((left, right), side).count(color, shape) > 0, ((color, shape),), shape
        )
    if template == 2:
        sentence = rng.choice(
            [
                f"Both images contain {article(color)} {color} shape.",
                f"Each image shows at least one {color} shape.",
            ]
        )
        return Statement(
            sentence,
            lambda left, right: left.count(color=color) > 0 and right.count(color=color) > 0,
            ((color, None),),
            "shape",
        )
    if template == 3:
        sentence = f"Both images contain {article(color)} {color} {shape}."
        return Statement(
            sentence,
            lambda left, right: left.count(color, shape) > 0 and right.count(color, shape) > 0,
            ((color, shape),),
            shape,
        )
    if template == 4:
        sentence = f"At least one image contains {article(color)} {color} shape."
        return Statement(
            sentence,
            lambda left, right: left.count(color=color) > 0 or right.count(color=color) > 0,
            ((color, None),),
            "shape",
        )
    if template == 5:
        sentence = f"At least one image contains {article(color)} {color} {shape}."
        return Statement(
            sentence,
            lambda left, right: left.count(color, shape) > 0 or right.count(color, shape) > 0,
            ((color, shape),),
            shape,
        )
    sentence = f"There are more {color} shapes in the {side} image than in the {other} image."
    return Statement(
        sentence,
        lambda left, right: (
            _side((left, right), side).count(color=color) > _side((left, right), other).count(color=color)
        ),
        ((color, None),),
        "shape",
    )


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    splits = {}
    for split in ("train", "dev", "test1"):
        n_sets = counts[split] // 4
        lines, labels, n_pairs = [], Counter(), 0
        for set_id in range(n_sets):
            statements, pairs = _nlvr2_set(rng, world.image_size)
            for pair_index, (left, right) in enumerate(pairs):
                folder = root / "images" / split / (str(set_id % 100) if split == "train" else "")
                for side, scene in enumerate((left, right)):
                    image = render_scene(scene)
                    world.progress.update(1)
                    atomic_write_bytes(folder / f"{split}-{set_id}-{pair_index}-img{side}.png", encode_png(image))
            n_pairs += len(pairs)
            for sentence_index, statement in enumerate(statements):
                writer = str(rng.randrange(0, 170))
                for pair_index in rng.sample(range(len(pairs)), len(pairs)):
                    left, right = pairs[pair_index]
                    label = "True" if statement.holds(left, right) else "False"
                    labels[label] += 1
                    lines.append(_nlvr2_line(rng, split, set_id, pair_index, sentence_index, statement, writer, label))
        atomic_write_text(root / f"{split}.json", "".join(json.dumps(line) + "\n" for line in lines))
        splits[split] = {"pairs": n_pairs, "examples": len(lines), "labels": dict(sorted(labels.items()))}
    return {"splits": splits}


def _nlvr2_set(rng: random.Random, image_size: int) -> tuple[list[Statement], list[tuple[Scene, Scene]]]:
    """Four image pairs and one or two sentences, each sentence true for exactly two of the four pairs.

    The first sentence is drawn first and its pairs are rejection-sampled to hit the planned labels; the second
    is searched among random sentences for one that splits the same pairs 2/2 (else the set keeps one sentence,
    which also happens in the real data). Exact 2/2 per sentence keeps every template at 50 % True.
    """
    for _ in range(200):
        statement = random_statement(rng)
        targets = [True, True, False, False]
        rng.shuffle(targets)
        pairs = []
        for target in targets:
            for _ in range(400):
                left = sample_scene(rng, image_size, focus=list(statement.focus))
                right = sample_scene(rng, image_size, focus=list(statement.focus))
                if statement.holds(left, right) == target:
                    pairs.append((left, right))
                    break
            else:
                break  # this sentence is (nearly) impossible to make true/false here: draw another
        if len(pairs) == 4:
            break
    else:  # every template is true for some scene pairs and false for others, so this means a bug
        raise RuntimeError("could not sample NLVR2 image pairs for 200 sentences in a row")
    statements = [statement]
    all_scenes = [scene for pair in pairs for scene in pair]
    for _ in range(80):
        candidate = random_statement(rng, hint=rng.choice(all_scenes))
        if candidate.sentence != statement.sentence and sum(candidate.holds(left, right) for left, right in pairs) == 2:
            statements.append(candidate)
            break
    return statements, pairs


def _nlvr2_line(rng, split, set_id, pair_index, sentence_index, statement, writer, label) -> dict:
    def other_label(agree_prob: float) -> str:
        return label if rng.random() < agree_prob else ("False" if label == "True" else "True")

    validator = str(rng.randrange(0, 170))
    extra = {} if split == "train" else {str(v): other_label(0.95) for v in rng.sample(range(170), 4)}
    line = {
        "validation": {validator: label},
        "sentence": statement.sentence,
        "left_url": f"{DEMO_HOST}/nlvr2/{split}-{set_id}-{pair_index}-img0.png",
        "writer": writer,
        "label": label,
        "right_url": f"{DEMO_HOST}/nlvr2/{split}-{set_id}-{pair_index}-img1.png",
        "synset": statement.synset,
        "query": f"some {plural(statement.synset)}{set_id % 50}",
        "identifier": f"{split}-{set_id}-{pair_index}-{sentence_index}",
        "extra_validations": extra,
    }
    if split == "train":
        line["directory"] = set_id % 100
    return line
