"""The demo world's scenes: sampling, rendering and every piece of text derived from a scene graph.

A scene is 1-4 coloured shapes placed in distinct cells of a 3x3 grid on a lightly textured gray background.
Everything a dataset says about an image (captions, region phrases, VQA answers, NLVR2 truth values, corpus
sentences) is computed from the scene graph here, so text and pixels never disagree. The vocabulary is small on
purpose: a tiny VLMo at 64x64 px can learn colours, shapes, sizes, grid positions, counts and left/right/above/
below relations, and the answer/label balancing below keeps the tasks from being solvable from the text alone.

All randomness comes from a caller-supplied ``random.Random`` so a seed fixes every byte.
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 45),
    "blue": (35, 75, 225),
    "yellow": (240, 220, 35),
    "purple": (140, 45, 185),
    "orange": (250, 140, 25),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SIZES: tuple[str, ...] = ("small", "large")
# Background: a mid gray that contrasts with every shape colour, black and white included. It is never named with
# a palette colour word, so a caption can only mention a palette colour when a shape has it.
BACKGROUND_BASE = 128
BACKGROUND_NAME = "gray"

COLUMN_WORDS = ("left", "center", "right")
ROW_WORDS = ("top", "middle", "bottom")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")

GRID = 3
MIN_OBJECTS, MAX_OBJECTS = 2, 4
SUPERSAMPLE = 4  # draw at 4x and downsample, so 64 px edges are anti-aliased


@dataclass(frozen=True)
class SceneObject:
    """One shape of a scene; ``row``/``col`` are grid cells, ``box`` its pixel box (x, y, width, height)."""

    shape: str
    color: str
    size: str
    row: int
    col: int
    center_x: float
    center_y: float
    radius: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """A rendered-to-be image: its objects, its size in pixels and its background tone."""

    objects: tuple[SceneObject, ...]
    image_size: int
    background: tuple[int, int, int]
    texture_seed: int

    def count(self, color: str | None = None, shape: str | None = None, size: str | None = None) -> int:
        """Number of objects matching every given attribute (``None`` = any)."""
        return sum(1 for obj in self.objects if _matches(obj, color, shape, size))

    def matching(self, color: str | None = None, shape: str | None = None) -> list[SceneObject]:
        return [obj for obj in self.objects if _matches(obj, color, shape, None)]


def _matches(obj: SceneObject, color: str | None, shape: str | None, size: str | None) -> bool:
    return (
        (color is None or obj.color == color)
        and (shape is None or obj.shape == shape)
        and (size is None or obj.size == size)
    )


# --------------------------------------------------------------------------------------------- sampling

Focus = tuple[str | None, str | None]  # (colour or None, shape or None): attributes a sampler should favour


def sample_scene(
    rng: random.Random,
    image_size: int,
    n_objects: int | None = None,
    focus: list[Focus] | None = None,
    focus_prob: float = 0.45,
) -> Scene:
    """Draw a random scene.

    ``n_objects`` defaults to uniform 2-4 (so "how many shapes" answers are uniform; a one-shape scene would
    share its whole-scene caption with every other scene holding the same coloured shape). With probability 0.3 an
    object copies the colour or the shape of an earlier one, so counts of 2-4 of a kind occur. ``focus`` makes
    each object, with ``focus_prob``, take the given colour/shape; NLVR2 uses it to make the statement it tests
    neither always true nor always false.
    """
    if n_objects is None:
        n_objects = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    cells = rng.sample([(r, c) for r in range(GRID) for c in range(GRID)], n_objects)
    objects: list[SceneObject] = []
    for row, col in cells:
        color, shape = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
        if objects and rng.random() < 0.3:
            earlier = rng.choice(objects)
            if rng.random() < 0.5:
                color = earlier.color
            else:
                shape = earlier.shape
        if focus and rng.random() < focus_prob:
            focus_color, focus_shape = rng.choice(focus)
            color = focus_color or color
            shape = focus_shape or shape
        size = rng.choice(SIZES)
        objects.append(_place(rng, shape, color, size, row, col, image_size))
    tone = BACKGROUND_BASE + rng.randint(-12, 12)
    background = (tone + rng.randint(-4, 4), tone + rng.randint(-4, 4), tone + rng.randint(-4, 4))
    return Scene(tuple(objects), image_size, background, rng.getrandbits(32))


def _place(rng: random.Random, shape: str, color: str, size: str, row: int, col: int, image_size: int) -> SceneObject:
    cell = image_size / GRID
    radius = image_size * (0.095 if size == "small" else 0.148) * rng.uniform(0.93, 1.07)
    slack = max(0.0, cell / 2 - radius - image_size * 0.01)  # keep the shape inside its cell
    center_x = cell * (col + 0.5) + rng.uniform(-slack, slack)
    center_y = cell * (row + 0.5) + rng.uniform(-slack, slack)
    x0, y0, x1, y1 = _extent(shape, center_x, center_y, radius)
    left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    right, bottom = min(image_size, int(np.ceil(x1))), min(image_size, int(np.ceil(y1)))
    return SceneObject(
        shape, color, size, row, col, center_x, center_y, radius, (left, top, right - left, bottom - top)
    )


def _extent(shape: str, cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
    """Pixel extent (x0, y0, x1, y1) of a shape; must agree with ``_draw_shape``."""
    if shape == "square":
        half = r * 0.88
        return cx - half, cy - half, cx + half, cy + half
    if shape == "triangle":
        return cx - r, cy - r, cx + r, cy + 0.8 * r
    return cx - r, cy - r, cx + r, cy + r  # circle, cross


# --------------------------------------------------------------------------------------------- rendering


def render_scene(scene: Scene) -> Image.Image:
    """Render a scene to an RGB image of ``scene.image_size`` pixels (deterministic for the scene)."""
    size = scene.image_size
    noise_rng = np.random.default_rng(scene.texture_seed)
    base = np.empty((size, size, 3), dtype=np.float32)
    base[:] = scene.background
    base += noise_rng.normal(0.0, 4.0, size=(size, size, 1))  # light luminance texture
    background = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")

    big = size * SUPERSAMPLE
    canvas = background.resize((big, big), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        _draw_shape(draw, obj, SUPERSAMPLE)
    return canvas.resize((size, size), Image.Resampling.BOX)


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, scale: int) -> None:
    fill = COLORS[obj.color]
    cx, cy, r = obj.center_x * scale, obj.center_y * scale, obj.radius * scale
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "square":
        half = r * 0.88
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=fill)
    elif obj.shape == "cross":
        arm = r * 0.32
        draw.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=fill)
        draw.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {obj.shape!r}")


def encode_jpeg(image: Image.Image) -> bytes:
    """JPEG bytes with fixed encoder settings (quality 92, no chroma subsampling: small colour shapes stay crisp)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, subsampling=0, optimize=False, progressive=False)
    return buffer.getvalue()


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with fixed settings and no metadata chunks (level 1: the textured background barely compresses)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, optimize=False)
    return buffer.getvalue()


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
    return _matches(obj, color, shape, size)


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


# --------------------------------------------------------------------------------------------- VQA


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


# --------------------------------------------------------------------------------------------- NLVR2


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
