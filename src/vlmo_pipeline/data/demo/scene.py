"""The demo world's scene model: what a picture holds (1-4 coloured shapes on a 3x3 grid), how it is sampled and
how it is rendered and encoded.

A scene is 1-4 coloured shapes placed in distinct cells of a 3x3 grid on a lightly textured gray background.
Every text a dataset says about an image is computed from this scene graph (:mod:`.language`, and the question
and statement logic of :mod:`.vqav2` and :mod:`.nlvr2`), so text and pixels never disagree.

All randomness comes from a caller-supplied ``random.Random`` so a seed fixes every byte.
"""

from __future__ import annotations

import io
import random
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
        return sum(1 for obj in self.objects if matches(obj, color, shape, size))

    def matching(self, color: str | None = None, shape: str | None = None) -> list[SceneObject]:
        return [obj for obj in self.objects if matches(obj, color, shape, None)]


def matches(obj: SceneObject, color: str | None, shape: str | None, size: str | None) -> bool:
    """Whether ``obj`` has every given attribute (``None`` = any)."""
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
