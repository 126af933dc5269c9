"""The demo's Conceptual Captions: the two TSV files and their img2dataset downloads, train in the files layout
and val in the webdataset layout (the layouts :mod:`vlmo_pipeline.data.raw.cc3m` reads)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from vlmo_pipeline.data.demo.img2dataset import download_rows, write_img2dataset
from vlmo_pipeline.data.demo.language import web_caption
from vlmo_pipeline.data.demo.output import DEMO_HOST, atomic_write_text

if TYPE_CHECKING:
    from vlmo_pipeline.data.demo.world import World


def write(root: Path, rng: random.Random, world: World, counts: dict[str, int]) -> dict:
    splits = {}
    layout = {
        "train": ("Train_GCC-training.tsv", "images_train", "files"),
        "val": ("Validation_GCC-1.1.0-Validation.tsv", "images_val", "webdataset"),
    }
    for split, (tsv_name, image_folder, output_format) in layout.items():
        urls = [f"{DEMO_HOST}/cc3m/{split}/{index:06d}.jpg" for index in range(counts[split])]
        captions, rows = download_rows(rng, world, urls, web_caption)
        atomic_write_text(root / tsv_name, "".join(f"{caption}\t{url}\n" for caption, url in zip(captions, urls)))
        totals = write_img2dataset(root / image_folder, rows(), output_format)
        world.progress.update(totals["failed_to_download"])  # failed rows render nothing but count as done
        splits[split] = {
            "rows": totals["count"],
            "images": totals["successes"],
            "failed": totals["failed_to_download"],
            "layout": output_format,
        }
    return {"splits": splits}
