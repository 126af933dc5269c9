"""The demo world's language: every caption, phrase and corpus sentence derived from one scene graph.

The vocabulary is small on purpose: a tiny VLMo at 64x64 px can learn colours, shapes, sizes, grid positions,
counts and left/right/above/below relations. Each caption comes with its truth function over scene graphs, so a
caption is checked against any other image. Every dataset's caption style lives here (COCO, Flickr30K, Visual
Genome regions, CC3M alt-text, SBU user captions, the text corpus); the question and statement logic of VQAv2
and NLVR2 lives with those datasets (:mod:`.vqav2`, :mod:`.nlvr2`).

All randomness comes from a caller-supplied ``random.Random`` so a seed fixes every byte.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vlmo_pipeline.data.demo.scene import (
    BACKGROUND_NAME,
    COLOR_NAMES,
    COLUMN_WORDS,
    NUMBER_WORDS,
    ROW_WORDS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    matches,
    sample_scene,
)

# --------------------------------------------------------------------------------------------- phrases


def plural(shape: str) -> str:
    return shape + "es" if shape == "cross" else shape + "s"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def object_phrase(obj: SceneObject, rng: random.Random, size_prob: float = 0.35, determiner: str = "a") -> str:
    """'a red circle' / 'a small red circle' / 'the large blue cross'."""
    words = ([obj.size] if rng.random() < size_prob else []) + [obj.color, obj.shape]
    if determiner == "a":
        return f"{article(words[0])} {' '.join(words)}"
    return f"{determiner} {' '.join(words)}"


def position_phrase(obj: SceneObject, rng: random.Random) -> str:
    """Grid position in words: 'in the center', 'at the top', 'on the left', 'in the top left corner'."""
    row_word, col_word = ROW_WORDS[obj.row], COLUMN_WORDS[obj.col]
    if obj.row == 1 and obj.col == 1:
        return rng.choice(["in the center", "in the middle"])
    if obj.row == 1:
        return rng.choice([f"on the {col_word}", f"on the {col_word} side"])
    if obj.col == 1:
        return rng.choice([f"at the {row_word}", f"at the {row_word} of the picture"])
    return rng.choice([f"in the {row_word} {col_word} corner", f"at the {row_word} {col_word}"])


def relation_words(a: SceneObject, b: SceneObject) -> list[str]:
    """Every relation 'a <rel> b' that holds on the grid (shapes in distinct cells, so at least one holds)."""
    words = []
    if a.col < b.col:
        words.append("to the left of")
    if a.col > b.col:
        words.append("to the right of")
    if a.row < b.row:
        words.append("above")
    if a.row > b.row:
        words.append("below")
    return words


def holds_relation(a: SceneObject, relation: str, b: SceneObject) -> bool:
    return relation in relation_words(a, b)


def group_counts(scene: Scene) -> list[tuple[str, str, int]]:
    """(colour, shape, count) groups in order of first appearance."""
    counts = Counter((obj.color, obj.shape) for obj in scene.objects)
    seen: list[tuple[str, str]] = []
    for obj in scene.objects:
        if (obj.color, obj.shape) not in seen:
            seen.append((obj.color, obj.shape))
    return [(color, shape, counts[(color, shape)]) for color, shape in seen]


def group_phrase(color: str, shape: str, count: int) -> str:
    if count == 1:
        return f"{article(color)} {color} {shape}"
    return f"{number_word(count)} {color} {plural(shape)}"


def join_list(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def groups_phrase(scene: Scene, rng: random.Random) -> str:
    """All objects, grouped: 'two green triangles and a yellow cross' (order shuffled for variety)."""
    groups = group_counts(scene)
    rng.shuffle(groups)
    return join_list([group_phrase(*group) for group in groups])


# --------------------------------------------------------------------------------------------- captions
#
# Every pretraining / retrieval caption describes the *whole* scene: each shape with its colour (and count), plus,
# depending on the template, sizes, one relation or one grid position. A caption is then false of another image
# unless that image holds exactly the same coloured shapes (rare with 2-4 shapes out of 32 colour-shape pairs), so
# the look-alike captions that the official ITM sampler picks from the ITC similarities are true negatives. Each
# template returns a :class:`Caption` whose ``holds`` re-checks the sentence against any scene graph.

Mention = tuple[str | None, str, str]  # (size or None, colour, shape): what a phrase says about one object


@dataclass(frozen=True)
class Caption:
    """A caption and its truth function over scene graphs (``holds(scene)``)."""

    text: str
    holds: Callable[[Scene], bool]


def _mention_phrase(obj: SceneObject, rng: random.Random, size_prob: float) -> tuple[str, Mention]:
    phrase = object_phrase(obj, rng, size_prob=size_prob)
    size = obj.size if phrase.split()[1] in SIZES else None
    return phrase, (size, obj.color, obj.shape)


def _fits(obj: SceneObject, mention: Mention) -> bool:
    size, color, shape = mention
    return matches(obj, color, shape, size)


def _same_groups(scene: Scene, groups: Counter) -> bool:
    return _groups_of(scene) == groups


def _groups_of(scene: Scene) -> Counter:
    return Counter((obj.color, obj.shape) for obj in scene.objects)


def _caption_all_groups(scene: Scene, rng: random.Random) -> Caption:
    lead = rng.choice(["", "a picture of ", "an image of ", "a drawing of ", "a photo showing "])
    groups = _groups_of(scene)
    return Caption(lead + groups_phrase(scene, rng), lambda other: _same_groups(other, groups))


def _caption_there_is(scene: Scene, rng: random.Random) -> Caption:
    groups = group_counts(scene)
    rng.shuffle(groups)
    verb = "is" if groups[0][2] == 1 else "are"  # agrees with the first item, as in "there is a cat and two dogs"
    tail = rng.choice(["", f" on a {BACKGROUND_NAME} background", " in the picture", " in this image"])
    text = f"there {verb} {join_list([group_phrase(*group) for group in groups])}{tail}"
    counts = _groups_of(scene)
    return Caption(text, lambda other: _same_groups(other, counts))


def _caption_relation(scene: Scene, rng: random.Random) -> Caption:
    if len(scene.objects) == 1:
        return _caption_position(scene, rng)
    a, b = rng.sample(list(scene.objects), 2)
    relation = rng.choice(relation_words(a, b))
    phrase_a, mention_a = _mention_phrase(a, rng, 0.35)
    phrase_b, mention_b = _mention_phrase(b, rng, 0.35)
    text = f"{phrase_a} {relation} {phrase_b}"
    rest = [obj for obj in scene.objects if obj is not a and obj is not b]
    if rest:  # always name the other shapes: the caption stays a description of the whole scene
        text += ", plus " + join_list([object_phrase(obj, rng, size_prob=0.0) for obj in rest])
    groups = _groups_of(scene)

    def holds(other: Scene) -> bool:
        return _same_groups(other, groups) and any(
            _fits(x, mention_a) and _fits(y, mention_b) and holds_relation(x, relation, y)
            for x in other.objects
            for y in other.objects
            if x is not y
        )

    return Caption(text, holds)


def _caption_position(scene: Scene, rng: random.Random) -> Caption:
    obj = rng.choice(scene.objects)
    phrase, mention = _mention_phrase(obj, rng, 0.6)
    text = f"{phrase} {position_phrase(obj, rng)}"
    others = [o for o in scene.objects if o is not obj]
    if others:
        text = rng.choice(["there is ", ""]) + text
        text += " next to " + join_list([object_phrase(o, rng, size_prob=0.0) for o in others])
    groups, cell = _groups_of(scene), (obj.row, obj.col)
    return Caption(
        text,
        lambda other: (
            _same_groups(other, groups) and any(_fits(o, mention) and (o.row, o.col) == cell for o in other.objects)
        ),
    )


def _caption_count(scene: Scene, rng: random.Random) -> Caption:
    n = len(scene.objects)
    noun = "shape" if n == 1 else "shapes"
    lead = rng.choice(
        [f"{number_word(n)} {noun}: ", f"{number_word(n)} {noun} including ", f"{number_word(n)} {noun}, "]
    )
    groups = _groups_of(scene)
    return Caption(lead + groups_phrase(scene, rng), lambda other: _same_groups(other, groups))


def _caption_sizes(scene: Scene, rng: random.Random) -> Caption:
    parts = [object_phrase(obj, rng, size_prob=1.0) for obj in rng.sample(list(scene.objects), len(scene.objects))]
    sized = Counter((obj.size, obj.color, obj.shape) for obj in scene.objects)
    text = join_list(parts) + rng.choice(["", f" on {BACKGROUND_NAME}", " on a plain background"])
    return Caption(text, lambda other: Counter((o.size, o.color, o.shape) for o in other.objects) == sized)


CAPTION_TEMPLATES: tuple[Callable[[Scene, random.Random], Caption], ...] = (
    _caption_all_groups,
    _caption_there_is,
    _caption_relation,
    _caption_position,
    _caption_count,
    _caption_sizes,
)


def scene_caption_objects(scene: Scene, rng: random.Random, n_captions: int = 5) -> list[Caption]:
    """``n_captions`` captions (with truth functions) from distinct templates (templates reused only past six)."""
    order = list(CAPTION_TEMPLATES)
    rng.shuffle(order)
    return [order[i % len(order)](scene, rng) for i in range(n_captions)]


def scene_captions(scene: Scene, rng: random.Random, n_captions: int = 5) -> list[str]:
    """``n_captions`` lowercase captions from distinct templates (templates reused only past six)."""
    return [caption.text for caption in scene_caption_objects(scene, rng, n_captions)]


def coco_style(text: str, rng: random.Random) -> str:
    """COCO raw captions: sentence case, usually a final period, sometimes a trailing space."""
    text = text[0].upper() + text[1:]
    if rng.random() < 0.8:
        text += "."
    if rng.random() < 0.1:
        text += " "
    return text


def flickr_style(text: str, rng: random.Random) -> str:
    """Flickr30K raw captions: sentence case, tokens separated by spaces, ' .' at the end."""
    words = text.replace(",", " ,").replace(":", " :").split()
    return words[0].capitalize() + " " + " ".join(words[1:]) + " ." if len(words) > 1 else words[0].capitalize() + " ."


def karpathy_tokens(raw: str) -> list[str]:
    """Karpathy-file tokens: lowercase alphanumeric words, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", raw.lower())


def _noun_caption(scene: Scene, rng: random.Random) -> Caption:
    """A whole-scene caption that is a noun phrase (no leading verb), so web/user framings stay grammatical."""
    kind = rng.randrange(3)
    if kind == 0:
        groups = _groups_of(scene)
        return Caption(groups_phrase(scene, rng), lambda other: _same_groups(other, groups))
    return (_caption_relation if kind == 1 else _caption_sizes)(scene, rng)


def _framed(caption: Caption, text: str) -> Caption:
    return Caption(text, caption.holds)


def web_caption_object(scene: Scene, rng: random.Random) -> Caption:
    """A CC3M-like alt-text caption: lowercase, no final period, sometimes stock-photo noise words."""
    core = _noun_caption(scene, rng)
    prefix = rng.choice(["", "", "", "stock image of ", "vector illustration of ", "abstract art with "])
    suffix = rng.choice(["", "", "", " -- geometric design", " in flat style"])
    return _framed(core, prefix + core.text + suffix)


def web_caption(scene: Scene, rng: random.Random) -> str:
    return web_caption_object(scene, rng).text


def user_caption_object(scene: Scene, rng: random.Random) -> Caption:
    """An SBU-like user caption: first person, mixed case, mentions the shapes and colours."""
    frame = rng.choice(["{c}", "I drew {c}", "{c} I drew today", "Just {c}", "{c} on my desk", "Look, {c}!"])
    core = _noun_caption(scene, rng)
    text = frame.format(c=core.text)
    return _framed(core, text[0].upper() + text[1:])


def user_caption(scene: Scene, rng: random.Random) -> str:
    return user_caption_object(scene, rng).text


# --------------------------------------------------------------------------------------------- Visual Genome


def region_caption_objects(
    scene: Scene, rng: random.Random, low: int = 3, high: int = 6
) -> list[tuple[Caption, tuple[int, int, int, int]]]:
    """3-6 region descriptions with pixel boxes (x, y, width, height) that match the render.

    Real VG regions mostly describe one object ("red circle"); pretraining uses every region phrase as a caption
    of the whole image, and a one-object phrase is true of many other images, which makes the official
    hard-negative ITM labels wrong. The demo's regions therefore frame the group of all shapes (the union of
    their boxes) and describe all of them, in the noun-phrase templates of the other captions.
    """
    box = scene.objects[0].box
    for obj in scene.objects[1:]:
        box = _union(box, obj.box)
    regions = []
    for _ in range(rng.randint(low, high)):
        caption = _noun_caption(scene, rng)
        # Real VG phrases are lowercase and now and then end with a space.
        regions.append((_framed(caption, caption.text + (" " if rng.random() < 0.1 else "")), box))
    return regions


def region_phrases(
    scene: Scene, rng: random.Random, low: int = 3, high: int = 6
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The phrases and boxes of :func:`region_caption_objects`."""
    return [(caption.text, box) for caption, box in region_caption_objects(scene, rng, low, high)]


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


# --------------------------------------------------------------------------------------------- text corpus

SHAPE_FACTS = {
    "circle": ["A circle is round and has no corners .", "Circles look the same from every side ."],
    "square": ["A square has four equal sides and four corners .", "Squares are drawn with straight edges ."],
    "triangle": ["A triangle has three sides and three corners .", "Most triangles in the pictures point upward ."],
    "cross": ["A cross is made of two bars that meet in the middle .", "A cross looks like a plus sign ."],
}


def corpus_sentence(rng: random.Random, image_size: int) -> str:
    """One wikitext-style sentence (spaced punctuation) about the shapes world: facts or a described scene."""
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(SHAPE_FACTS[rng.choice(SHAPES)])
    if kind < 0.25:
        color, shape = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
        return rng.choice(
            [
                f"A {color} {shape} can be small or large .",
                f"The color of {article(color)} {color} {shape} is {color} .",
                f"Some pictures contain {article(color)} {color} {shape} and some do not .",
                f"When a picture shows two {color} {plural(shape)} , there are two {plural(shape)} of that color .",
            ]
        )
    scene = sample_scene(rng, image_size)
    objects = list(scene.objects)
    form = rng.randrange(5)
    if form == 0 and len(objects) >= 2:
        a, b = rng.sample(objects, 2)
        text = f"In one picture , {object_phrase(a, rng)} is {rng.choice(relation_words(a, b))} {object_phrase(b, rng)}"
    elif form == 1:
        obj = rng.choice(objects)
        text = f"The {obj.color} {obj.shape} is {position_phrase(obj, rng)}"
        if scene.count(obj.color, obj.shape) > 1:
            text = f"One {obj.color} {obj.shape} is {position_phrase(obj, rng)}"
    elif form == 2:
        n = len(objects)
        text = f"This picture has {number_word(n)} shape{'s' if n > 1 else ''} : {groups_phrase(scene, rng)}"
    elif form == 3:
        text = f"Another image shows {groups_phrase(scene, rng)}"
    else:
        text = _caption_there_is(scene, rng).text
    text = " ".join(text.replace(",", " ,").split())
    return text[0].upper() + text[1:] + " ."
