"""The demo's SBU Captions: sbu-captions-all.json and its img2dataset download in the files layout (the layout
:mod:`vlmo_pipeline.data.raw.sbu` reads)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.img2dataset import download_rows, write_img2dataset
from vlmo_pipeline.data.demo.language import user_caption
from vlmo_pipeline.data.demo.output import DEMO_HOST, atomic_write_json

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    n_images = counts["train"]
    urls = [
        f"{DEMO_HOST}/sbu/{rng.randrange(1000, 9999)}/{rng.getrandbits(36)}_{rng.getrandbits(40):010x}.jpg"
        for _ in range(n_images)
    ]
    user_ids = [f"{rng.randrange(10**7, 10**8)}@N{rng.randrange(10):02d}" for _ in range(n_images)]
    captions, rows = download_rows(rng, world, urls, user_caption)
    atomic_write_json(root / "sbu-captions-all.json", {"image_urls": urls, "user_ids": user_ids, "captions": captions})
    totals = write_img2dataset(root / "images", rows(), "files")
    world.progress.update(totals["failed_to_download"])
    return {
        "splits": {
            "train": {
                "rows": totals["count"],
                "images": totals["successes"],
                "failed": totals["failed_to_download"],
                "layout": "files",
            }
        }
    }
