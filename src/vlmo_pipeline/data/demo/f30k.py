"""The demo's Flickr30K: images and the Karpathy split file (the layout :mod:`vlmo_pipeline.data.raw.f30k` reads)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.language import flickr_style, karpathy_tokens, scene_captions
from vlmo_pipeline.data.demo.output import atomic_write_bytes, atomic_write_json
from vlmo_pipeline.data.demo.scene import encode_jpeg

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    splits = [split for split in ("train", "val", "test") for _ in range(counts[split])]
    rng.shuffle(splits)
    photo_ids = rng.sample(range(10**8, 8 * 10**9), len(splits))
    images, split_stats, sentence_id = [], {}, 0
    for imgid, (split, photo_id) in enumerate(zip(splits, photo_ids)):
        scene, image = world.scene_image(rng)
        filename = f"{photo_id}.jpg"
        atomic_write_bytes(root / "flickr30k-images" / filename, encode_jpeg(image))
        sentences = []
        for text in scene_captions(scene, rng, 5):
            raw = flickr_style(text, rng)
            sentences.append({"tokens": karpathy_tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentence_id})
            sentence_id += 1
        images.append(
            {
                "sentids": [s["sentid"] for s in sentences],
                "imgid": imgid,
                "sentences": sentences,
                "split": split,
                "filename": filename,
            }
        )
        split_stats.setdefault(split, Counter()).update(images=1, captions=len(sentences))
    atomic_write_json(root / "karpathy" / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})
    return {"splits": {split: dict(stats) for split, stats in sorted(split_stats.items())}}
