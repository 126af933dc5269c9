"""The demo's Visual Genome: images in two folders, image_data.json and region_descriptions.json (the layout
:mod:`vlmo_pipeline.data.raw.vg` reads)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.language import region_phrases
from vlmo_pipeline.data.demo.output import DEMO_HOST, atomic_write_bytes, atomic_write_json
from vlmo_pipeline.data.demo.scene import encode_jpeg

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    n_images = counts["train"]
    image_data, region_descriptions = [], []
    region_id = rng.randrange(1, 2000)
    for image_id in range(1, n_images + 1):
        scene, image = world.scene_image(rng)
        folder = "VG_100K_2" if rng.random() < 0.2 else "VG_100K"  # real VG splits its images over two folders
        atomic_write_bytes(root / folder / f"{image_id}.jpg", encode_jpeg(image))
        image_data.append(
            {
                "width": world.image_size,
                "url": f"{DEMO_HOST}/rak248/{folder}/{image_id}.jpg",
                "height": world.image_size,
                "image_id": image_id,
                "coco_id": None,
                "flickr_id": None,
            }
        )
        regions = []
        for phrase, (x, y, width, height) in region_phrases(scene, rng):
            region_id += rng.randint(1, 3)
            regions.append(
                {
                    "region_id": region_id,
                    "width": width,
                    "height": height,
                    "image_id": image_id,
                    "phrase": phrase,
                    "y": y,
                    "x": x,
                }
            )
        region_descriptions.append({"regions": regions, "id": image_id})
    atomic_write_json(root / "image_data.json", image_data)
    atomic_write_json(root / "region_descriptions.json", region_descriptions)
    return {"images": n_images, "regions": sum(len(entry["regions"]) for entry in region_descriptions)}
