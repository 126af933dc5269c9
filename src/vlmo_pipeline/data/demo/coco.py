"""The demo's COCO 2014: images, the official caption files and the Karpathy split (the layout
:mod:`vlmo_pipeline.data.raw.coco` reads); the scenes are kept for the VQAv2 questions."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.language import coco_style, karpathy_tokens, scene_captions
from vlmo_pipeline.data.demo.output import DEMO_HOST, atomic_write_bytes, atomic_write_json
from vlmo_pipeline.data.demo.scene import encode_jpeg

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World

COCO_LICENSES = [
    {
        "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
        "id": 1,
        "name": "Attribution-NonCommercial-ShareAlike License",
    },
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {
        "url": "http://creativecommons.org/licenses/by-nc-nd/2.0/",
        "id": 3,
        "name": "Attribution-NonCommercial-NoDerivs License",
    },
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
    {"url": "http://creativecommons.org/licenses/by-sa/2.0/", "id": 5, "name": "Attribution-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nd/2.0/", "id": 6, "name": "Attribution-NoDerivs License"},
]


def _fixed_datetime(rng: random.Random, start: dt.datetime, span_days: int) -> dt.datetime:
    return start + dt.timedelta(seconds=rng.randrange(span_days * 86400))


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    """COCO 2014 images, official caption files and the Karpathy split; keeps the scenes for VQA."""
    n_val2014 = counts["restval"] + counts["val"] + counts["test"]
    image_ids = rng.sample(range(1, 581_930), counts["train"] + n_val2014)
    karpathy_splits = ["restval"] * counts["restval"] + ["val"] * counts["val"] + ["test"] * counts["test"]
    rng.shuffle(karpathy_splits)
    plan = [("train2014", "train", image_id) for image_id in image_ids[: counts["train"]]]
    plan += [("val2014", split, image_id) for split, image_id in zip(karpathy_splits, image_ids[counts["train"] :])]

    official = {folder: {"images": [], "annotations": []} for folder in ("train2014", "val2014")}
    karpathy_images = []
    annotation_id = rng.randrange(1, 1000)
    sentence_id = 0
    split_stats: dict[str, Counter] = {}
    # Karpathy's file lists the val2014 images first; keep that order.
    ordered = [item for item in plan if item[0] == "val2014"] + [item for item in plan if item[0] == "train2014"]
    for imgid, (folder, split, image_id) in enumerate(ordered):
        scene, image = world.scene_image(rng)
        file_name = f"COCO_{folder}_{image_id:012d}.jpg"
        atomic_write_bytes(root / folder / file_name, encode_jpeg(image))
        n_captions = 6 if rng.random() < 0.04 else 5  # a few real COCO images have more than five captions
        raws = [coco_style(text, rng) for text in scene_captions(scene, rng, n_captions)]
        captured = _fixed_datetime(rng, dt.datetime(2013, 11, 14), 30).strftime("%Y-%m-%d %H:%M:%S")
        official[folder]["images"].append(
            {
                "license": rng.randint(1, len(COCO_LICENSES)),
                "file_name": file_name,
                "coco_url": f"{DEMO_HOST}/coco/{folder}/{file_name}",
                "height": world.image_size,
                "width": world.image_size,
                "date_captured": captured,
                "flickr_url": f"{DEMO_HOST}/flickr/{rng.randrange(1000, 9999)}/"
                f"{image_id}_{rng.getrandbits(40):010x}.jpg",
                "id": image_id,
            }
        )
        sentences = []
        for raw in raws:
            annotation_id += rng.randint(1, 9)
            official[folder]["annotations"].append({"image_id": image_id, "id": annotation_id, "caption": raw})
            sentences.append({"tokens": karpathy_tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentence_id})
            sentence_id += 1
        karpathy_images.append(
            {
                "filepath": folder,
                "sentids": [s["sentid"] for s in sentences],
                "filename": file_name,
                "imgid": imgid,
                "split": split,
                "sentences": sentences,
                "cocoid": image_id,
            }
        )
        world.coco_images.append((folder, image_id, scene))
        split_stats.setdefault(split, Counter()).update(images=1, captions=len(raws))

    for folder, content in official.items():
        document = {
            "info": {
                "description": "Demo world (synthetic shapes) in COCO 2014 captions format",
                "url": f"{DEMO_HOST}/coco",
                "version": "1.0",
                "year": 2014,
                "contributor": "vlmo_pipeline demo_world",
                "date_created": "2017/09/01",
            },
            "images": content["images"],
            "licenses": COCO_LICENSES,
            "annotations": content["annotations"],
        }
        atomic_write_json(root / "annotations" / f"captions_{folder}.json", document)
    atomic_write_json(root / "karpathy" / "dataset_coco.json", {"images": karpathy_images, "dataset": "coco"})
    summary = {
        "images": {folder: len(content["images"]) for folder, content in official.items()},
        "captions": sum(len(content["annotations"]) for content in official.values()),
        "splits": {split: dict(stats) for split, stats in sorted(split_stats.items())},
    }
    return summary
