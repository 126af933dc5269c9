"""The demo's text corpus: wikitext-style train and valid files of sentences about the shapes world (the layout
:mod:`vlmo_pipeline.data.raw.text` reads)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.language import corpus_sentence, plural
from vlmo_pipeline.data.demo.output import atomic_write_text
from vlmo_pipeline.data.demo.scene import COLOR_NAMES, SHAPES

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World

SECTION_TITLES = ("Colors", "Shapes", "Positions", "Counting", "Relations", "Examples", "Sizes")


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    image_size, n_sentences = world.image_size, counts["sentences"]
    n_valid = max(5, round(n_sentences * 0.1))
    splits = {}
    for split, file_name, target in (
        ("train", "wiki.train.raw", n_sentences - n_valid),
        ("val", "wiki.valid.raw", n_valid),
    ):
        lines, written = [], 0
        while written < target:
            color, shape = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
            # Like wikitext: the file opens with a blank line; later headings follow the previous blank line.
            lines += ([] if lines else [" \n"]) + [f" = {color.capitalize()} {plural(shape)} = \n", " \n"]
            for section in rng.sample(SECTION_TITLES, rng.randint(1, 3)):
                lines += [f" = = {section} = = \n", " \n"]
                for _ in range(rng.randint(1, 3)):
                    n = min(rng.randint(3, 6), target - written)
                    if n <= 0:
                        break
                    paragraph = " ".join(corpus_sentence(rng, image_size) for _ in range(n))
                    lines += [f" {paragraph} \n", " \n"]
                    written += n
        atomic_write_text(root / file_name, "".join(lines))
        splits[split] = {"sentences": written, "lines": len(lines)}
    return {"splits": splits}
