"""The demo world: a small, learnable synthetic vision-language world written in the real datasets' raw formats.

This module runs one generation: ``generate_demo_world(out_dir)`` plans the counts, gives each dataset its own
random stream and staging folder, calls that dataset's writer (``data/demo/<dataset>.py``, mirroring the reader
``data/raw/<dataset>.py``) and swaps the finished tree in; it also holds the command line. The scenes are drawn
and rendered by :mod:`vlmo_pipeline.data.demo.scene` and described by :mod:`vlmo_pipeline.data.demo.language`.
The trees ``out_dir/{coco,f30k,vg,cc3m,sbu,vqav2,nlvr2,text}/`` are exactly as docs/data_layout.md describes,
so the same readers ingest the demo world and the real downloads. Command line: ``vlmo demo-data --out DIR``.

Guarantees:
* deterministic: a seed fixes every byte (independent random streams per dataset, fixed encoder settings,
  fixed dates instead of the clock);
* atomic: every file is written to a temporary name and renamed; each dataset folder is built in a hidden
  staging folder and swapped in whole, so a killed run leaves the previous tree or none, never a mix;
* safe: an existing dataset folder is replaced only if it is empty or was written by this generator (it holds
  ``.demo_world.json``); a folder with real data raises instead.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from vlmo_pipeline.data.demo import cc3m, coco, f30k, nlvr2, sbu, text, vg, vqav2
from vlmo_pipeline.data.demo.output import atomic_write_json
from vlmo_pipeline.data.demo.scene import Scene, render_scene, sample_scene
from vlmo_pipeline.data.registry import DATASETS

DEFAULT_N_IMAGES = 400
MARKER_FILE = ".demo_world.json"
FORMAT_VERSION = 1
# The marker's "generator" field: the generator's name since the format's first version (the module it was then),
# kept when the code moved into this package so that a seed's bytes, the markers included, stay the same.
GENERATOR = "vlmo_pipeline.data.demo_world"


# --------------------------------------------------------------------------------------------- sizes


def plan_counts(n_images: int) -> dict[str, dict[str, int]]:
    """Per-dataset, per-split item counts derived from ``n_images`` (the base images per captioning dataset)."""
    if n_images < 8:
        raise ValueError(f"n_images must be >= 8 so every split gets at least one item, got {n_images}")

    def part(fraction: float, minimum: int = 1) -> int:
        return max(minimum, round(n_images * fraction))

    def pairs(fraction: float) -> int:  # whole sets of four pairs
        return 4 * max(1, round(n_images * fraction / 4))

    return {
        "coco": {"train": n_images, "restval": part(1 / 8), "val": part(1 / 4), "test": part(1 / 4)},
        "f30k": {"train": part(3 / 4), "val": part(1 / 8), "test": part(1 / 4)},
        "vg": {"train": part(1 / 2)},
        "cc3m": {"train": part(3 / 4), "val": part(1 / 4)},
        "sbu": {"train": part(1 / 2)},
        # NLVR2 counts are image pairs; sets of four pairs share their sentences, as in the real data.
        "nlvr2": {"train": pairs(3), "dev": pairs(3 / 4), "test1": pairs(3 / 4)},
        "text": {"sentences": part(7.5, 20)},
    }


# --------------------------------------------------------------------------------------------- public API


def generate_demo_world(
    out_dir: str | Path,
    n_images: int = DEFAULT_N_IMAGES,
    seed: int = 0,
    image_size: int = 64,
    show_progress: bool = True,
) -> dict:
    """Render the whole demo world into ``out_dir/<dataset>/`` and return a JSON-able summary.

    ``n_images`` scales every dataset (see :func:`plan_counts`); ``image_size`` is the side of the square
    images in pixels (>= 32). The summary holds per dataset its path and counts per split.
    """
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels so shapes stay visible, got {image_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = plan_counts(n_images)
    for name in DATASETS:
        _check_replaceable(out_dir / name)

    total_images = (
        sum(counts["coco"].values())
        + sum(counts["f30k"].values())
        + counts["vg"]["train"]
        + sum(counts["cc3m"].values())
        + counts["sbu"]["train"]
        + 2 * sum(counts["nlvr2"].values())
    )
    progress = tqdm(total=total_images, desc="demo world", unit="img", disable=not show_progress)
    world = World(out_dir, seed, image_size, progress)
    summary: dict = {
        "out_dir": str(out_dir),
        "seed": seed,
        "n_images": n_images,
        "image_size": image_size,
        "datasets": {},
    }
    try:
        for name in DATASETS:
            summary["datasets"][name] = world.build(name, _WRITERS[name], counts.get(name, {}))
    finally:
        progress.close()
    return summary


class World:
    """Shared state of one generation run: output root, seed, image size, progress bar."""

    def __init__(self, out_dir: Path, seed: int, image_size: int, progress: tqdm) -> None:
        self.out_dir, self.seed, self.image_size, self.progress = out_dir, seed, image_size, progress
        # (folder, image id, scene) of every COCO image: the VQA writer asks its questions about them.
        self.coco_images: list[tuple[str, int, Scene]] = []

    def rng(self, name: str) -> random.Random:
        # One independent stream per dataset: changing one dataset's generator leaves the others' bytes alone.
        return random.Random(f"vlmo-demo-world:{self.seed}:{name}")

    def build(self, name: str, writer: Callable[..., dict], counts: dict[str, int]) -> dict:
        """Run ``writer`` into a hidden staging folder, add the marker, then swap it in place of ``out_dir/name``."""
        self.progress.set_description(f"demo world: {name}")
        staging = self.out_dir / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        summary = writer(staging, self.rng(name), self, counts)
        marker = {
            "generator": GENERATOR,
            "format_version": FORMAT_VERSION,
            "dataset": name,
            "seed": self.seed,
            "image_size": self.image_size,
        }
        atomic_write_json(staging / MARKER_FILE, marker, indent=2)
        _swap_in(staging, self.out_dir / name)
        summary["path"] = str(self.out_dir / name)
        return summary

    def scene_image(self, rng: random.Random, **sample_args) -> tuple[Scene, object]:
        scene = sample_scene(rng, self.image_size, **sample_args)
        image = render_scene(scene)
        self.progress.update(1)
        return scene, image


def _check_replaceable(target: Path) -> None:
    if target.exists() and any(target.iterdir()) and not (target / MARKER_FILE).exists():
        raise FileExistsError(
            f"{target} holds data that the demo-world generator did not write (no {MARKER_FILE}); "
            "refusing to replace it. Move it away or choose another output folder."
        )


def _swap_in(staging: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# One writer per dataset, called in DATASETS order (coco before vqav2, whose questions are about COCO's scenes).
_WRITERS: dict[str, Callable[[Path, random.Random, World, dict[str, int]], dict]] = {
    "coco": coco.write,
    "f30k": f30k.write,
    "vg": vg.write,
    "cc3m": cc3m.write,
    "sbu": sbu.write,
    "vqav2": vqav2.write,
    "nlvr2": nlvr2.write,
    "text": text.write,
}


# --------------------------------------------------------------------------------------------- command line


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data/01_raw", help="output folder (gets coco/, f30k/, ... subfolders)")
    parser.add_argument("--images", type=int, default=DEFAULT_N_IMAGES, help="base images per captioning dataset")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    summary = generate_demo_world(
        args.out, n_images=args.images, seed=args.seed, image_size=args.image_size, show_progress=not args.quiet
    )
    print(json.dumps(summary, indent=2))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``demo-data`` on a ``vlmo`` CLI; the parsed namespace's ``func(args)`` runs it and returns 0."""
    parser = subparsers.add_parser(
        "demo-data", help="render the synthetic demo world in the real raw formats", description=__doc__.splitlines()[0]
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vlmo_pipeline.data.demo --out DIR --images N --seed S``."""
    parser = argparse.ArgumentParser(prog="vlmo demo-data", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
