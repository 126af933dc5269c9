"""The demo world: a small, learnable synthetic vision-language world written in the real datasets' raw formats.

``generate_demo_world(out_dir)`` renders scenes of coloured shapes (see :mod:`vlmo_pipeline.data.scenes`) and
writes ``out_dir/{coco,f30k,vg,cc3m,sbu,vqav2,nlvr2,text}/`` exactly as docs/data_layout.md describes, so the
same readers ingest the demo world and the real downloads. Command line: ``vlmo demo-data --out DIR``.

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
import datetime as dt
import json
import random
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from vlmo_pipeline.data import scenes as sc
from vlmo_pipeline.data.img2dataset_layout import (
    DownloadRow,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    write_img2dataset,
)
from vlmo_pipeline.data.registry import DATASETS

DEFAULT_N_IMAGES = 400
MARKER_FILE = ".demo_world.json"
FORMAT_VERSION = 1
DEMO_HOST = "https://demo.invalid"
FAILED_DOWNLOAD_RATE = 0.02
# Questions per VQA image (real VQAv2: 5.4 on average). The demo asks more, so a tiny model sees enough distinct
# questions per family in a short fine-tune to learn to look at the image instead of a per-question prior.
VQA_QUESTIONS_PER_IMAGE = (8, 10)
DOWNLOAD_ERRORS = (
    "HTTP Error 404: Not Found",
    "HTTP Error 403: Forbidden",
    "<urlopen error [Errno -2] Name or service not known>",
    "The read operation timed out",
)


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
    world = _World(out_dir, seed, image_size, progress)
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


class _World:
    """Shared state of one generation run: output root, seed, image size, progress bar."""

    def __init__(self, out_dir: Path, seed: int, image_size: int, progress: tqdm) -> None:
        self.out_dir, self.seed, self.image_size, self.progress = out_dir, seed, image_size, progress
        # (folder, image id, scene) of every COCO image: the VQA writer asks its questions about them.
        self.coco_images: list[tuple[str, int, sc.Scene]] = []

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
            "generator": __name__,
            "format_version": FORMAT_VERSION,
            "dataset": name,
            "seed": self.seed,
            "image_size": self.image_size,
        }
        atomic_write_json(staging / MARKER_FILE, marker, indent=2)
        _swap_in(staging, self.out_dir / name)
        summary["path"] = str(self.out_dir / name)
        return summary

    def scene_image(self, rng: random.Random, **sample_args) -> tuple[sc.Scene, object]:
        scene = sc.sample_scene(rng, self.image_size, **sample_args)
        image = sc.render_scene(scene)
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


def _fixed_datetime(rng: random.Random, start: dt.datetime, span_days: int) -> dt.datetime:
    return start + dt.timedelta(seconds=rng.randrange(span_days * 86400))


def _failed_indices(rng: random.Random, count: int) -> set[int]:
    """About 2% of rows fail to download (at least one once there are 5 rows), like real img2dataset runs."""
    n_failed = round(count * FAILED_DOWNLOAD_RATE)
    if count >= 5:
        n_failed = max(1, n_failed)
    return set(rng.sample(range(count), n_failed))


# --------------------------------------------------------------------------------------------- COCO

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


def _write_coco(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
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
        atomic_write_bytes(root / folder / file_name, sc.encode_jpeg(image))
        n_captions = 6 if rng.random() < 0.04 else 5  # a few real COCO images have more than five captions
        raws = [sc.coco_style(text, rng) for text in sc.scene_captions(scene, rng, n_captions)]
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
            sentences.append({"tokens": sc.karpathy_tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentence_id})
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


# --------------------------------------------------------------------------------------------- Flickr30K


def _write_f30k(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    splits = [split for split in ("train", "val", "test") for _ in range(counts[split])]
    rng.shuffle(splits)
    photo_ids = rng.sample(range(10**8, 8 * 10**9), len(splits))
    images, split_stats, sentence_id = [], {}, 0
    for imgid, (split, photo_id) in enumerate(zip(splits, photo_ids)):
        scene, image = world.scene_image(rng)
        filename = f"{photo_id}.jpg"
        atomic_write_bytes(root / "flickr30k-images" / filename, sc.encode_jpeg(image))
        sentences = []
        for text in sc.scene_captions(scene, rng, 5):
            raw = sc.flickr_style(text, rng)
            sentences.append({"tokens": sc.karpathy_tokens(raw), "raw": raw, "imgid": imgid, "sentid": sentence_id})
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


# --------------------------------------------------------------------------------------------- Visual Genome


def _write_vg(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    n_images = counts["train"]
    image_data, region_descriptions = [], []
    region_id = rng.randrange(1, 2000)
    for image_id in range(1, n_images + 1):
        scene, image = world.scene_image(rng)
        folder = "VG_100K_2" if rng.random() < 0.2 else "VG_100K"  # real VG splits its images over two folders
        atomic_write_bytes(root / folder / f"{image_id}.jpg", sc.encode_jpeg(image))
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
        for phrase, (x, y, width, height) in sc.region_phrases(scene, rng):
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


# --------------------------------------------------------------------------------------------- CC3M and SBU


def _download_rows(rng: random.Random, world: _World, urls: list[str], make_caption) -> tuple[list[str], Callable]:
    """Captions for every URL (scenes sampled now) and a lazy generator of img2dataset rows (rendered later)."""
    failed = _failed_indices(rng, len(urls))
    planned = []
    for index, url in enumerate(urls):
        scene = sc.sample_scene(rng, world.image_size)
        caption = make_caption(scene, rng)
        error = rng.choice(DOWNLOAD_ERRORS) if index in failed else None
        planned.append((scene, caption, url, error))

    def rows():
        for scene, caption, url, error in planned:
            if error is not None:
                yield DownloadRow(caption, url, None, error_message=error)
                continue
            image = sc.render_scene(scene)
            world.progress.update(1)
            yield DownloadRow(caption, url, sc.encode_jpeg(image), world.image_size, world.image_size)

    return [caption for _, caption, _, _ in planned], rows


def _write_cc3m(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    splits = {}
    layout = {
        "train": ("Train_GCC-training.tsv", "images_train", "files"),
        "val": ("Validation_GCC-1.1.0-Validation.tsv", "images_val", "webdataset"),
    }
    for split, (tsv_name, image_folder, output_format) in layout.items():
        urls = [f"{DEMO_HOST}/cc3m/{split}/{index:06d}.jpg" for index in range(counts[split])]
        captions, rows = _download_rows(rng, world, urls, sc.web_caption)
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


def _write_sbu(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    n_images = counts["train"]
    urls = [
        f"{DEMO_HOST}/sbu/{rng.randrange(1000, 9999)}/{rng.getrandbits(36)}_{rng.getrandbits(40):010x}.jpg"
        for _ in range(n_images)
    ]
    user_ids = [f"{rng.randrange(10**7, 10**8)}@N{rng.randrange(10):02d}" for _ in range(n_images)]
    captions, rows = _download_rows(rng, world, urls, sc.user_caption)
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


# --------------------------------------------------------------------------------------------- VQAv2

VQA_INFO = {
    "description": "Demo world (synthetic shapes) in VQA v2.0 format",
    "url": f"{DEMO_HOST}/vqa",
    "version": "2.0",
    "year": 2017,
    "contributor": "vlmo_pipeline demo_world",
    "date_created": "2017-04-26 17:00:44",
}
VQA_LICENSE = {
    "url": "http://creativecommons.org/licenses/by/4.0/",
    "name": "Creative Commons Attribution 4.0 International License",
}


def _write_vqav2(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    """Questions about the COCO images (train2014 -> VQA train, val2014 -> VQA val), answered from their scenes."""
    if not world.coco_images:
        raise RuntimeError("the VQAv2 writer needs the COCO scenes: generate coco first")
    coco_images = world.coco_images
    splits = {}
    for folder, split in (("train2014", "train"), ("val2014", "val")):
        questions, annotations = [], []
        for _, image_id, scene in sorted((item for item in coco_images if item[0] == folder), key=lambda item: item[1]):
            for number, qa in enumerate(sc.vqa_questions(scene, rng, rng.randint(*VQA_QUESTIONS_PER_IMAGE))):
                question_id = image_id * 1000 + number
                questions.append({"image_id": image_id, "question": qa.question, "question_id": question_id})
                answers = sc.annotator_answers(qa, rng)
                annotations.append(
                    {
                        "question_type": qa.question_type,
                        "multiple_choice_answer": _majority(answers, qa.answer),
                        "answers": [
                            {"answer": answer, "answer_confidence": confidence, "answer_id": answer_id}
                            for answer_id, (answer, confidence) in enumerate(answers, start=1)
                        ],
                        "image_id": image_id,
                        "answer_type": qa.answer_type,
                        "question_id": question_id,
                    }
                )
        atomic_write_json(
            root / f"v2_OpenEnded_mscoco_{folder}_questions.json",
            {
                "info": VQA_INFO,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": VQA_LICENSE,
                "data_subtype": folder,
                "questions": questions,
            },
        )
        atomic_write_json(
            root / f"v2_mscoco_{folder}_annotations.json",
            {
                "info": VQA_INFO,
                "license": VQA_LICENSE,
                "data_subtype": folder,
                "annotations": annotations,
                "data_type": "mscoco",
            },
        )
        answer_types = Counter(a["answer_type"] for a in annotations)
        yes_no = Counter(a["multiple_choice_answer"] for a in annotations if a["answer_type"] == "yes/no")
        splits[split] = {
            "images": len({q["image_id"] for q in questions}),
            "questions": len(questions),
            "answer_types": dict(sorted(answer_types.items())),
            "yes_no": dict(sorted(yes_no.items())),
        }
    return {"splits": splits}


def _majority(answers: list[tuple[str, str]], correct: str) -> str:
    counts = Counter(answer for answer, _ in answers)
    best = max(counts.values())
    return correct if counts[correct] == best else sorted(a for a, c in counts.items() if c == best)[0]


# --------------------------------------------------------------------------------------------- NLVR2


def _write_nlvr2(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    splits = {}
    for split in ("train", "dev", "test1"):
        n_sets = counts[split] // 4
        lines, labels, n_pairs = [], Counter(), 0
        for set_id in range(n_sets):
            statements, pairs = _nlvr2_set(rng, world.image_size)
            for pair_index, (left, right) in enumerate(pairs):
                folder = root / "images" / split / (str(set_id % 100) if split == "train" else "")
                for side, scene in enumerate((left, right)):
                    image = sc.render_scene(scene)
                    world.progress.update(1)
                    atomic_write_bytes(folder / f"{split}-{set_id}-{pair_index}-img{side}.png", sc.encode_png(image))
            n_pairs += len(pairs)
            for sentence_index, statement in enumerate(statements):
                writer = str(rng.randrange(0, 170))
                for pair_index in rng.sample(range(len(pairs)), len(pairs)):
                    left, right = pairs[pair_index]
                    label = "True" if statement.holds(left, right) else "False"
                    labels[label] += 1
                    lines.append(_nlvr2_line(rng, split, set_id, pair_index, sentence_index, statement, writer, label))
        atomic_write_text(root / f"{split}.json", "".join(json.dumps(line) + "\n" for line in lines))
        splits[split] = {"pairs": n_pairs, "examples": len(lines), "labels": dict(sorted(labels.items()))}
    return {"splits": splits}


def _nlvr2_set(rng: random.Random, image_size: int) -> tuple[list[sc.Statement], list[tuple[sc.Scene, sc.Scene]]]:
    """Four image pairs and one or two sentences, each sentence true for exactly two of the four pairs.

    The first sentence is drawn first and its pairs are rejection-sampled to hit the planned labels; the second
    is searched among random sentences for one that splits the same pairs 2/2 (else the set keeps one sentence,
    which also happens in the real data). Exact 2/2 per sentence keeps every template at 50 % True.
    """
    for _ in range(200):
        statement = sc.random_statement(rng)
        targets = [True, True, False, False]
        rng.shuffle(targets)
        pairs = []
        for target in targets:
            for _ in range(400):
                left = sc.sample_scene(rng, image_size, focus=list(statement.focus))
                right = sc.sample_scene(rng, image_size, focus=list(statement.focus))
                if statement.holds(left, right) == target:
                    pairs.append((left, right))
                    break
            else:
                break  # this sentence is (nearly) impossible to make true/false here: draw another
        if len(pairs) == 4:
            break
    else:  # every template is true for some scene pairs and false for others, so this means a bug
        raise RuntimeError("could not sample NLVR2 image pairs for 200 sentences in a row")
    statements = [statement]
    all_scenes = [scene for pair in pairs for scene in pair]
    for _ in range(80):
        candidate = sc.random_statement(rng, hint=rng.choice(all_scenes))
        if candidate.sentence != statement.sentence and sum(candidate.holds(left, right) for left, right in pairs) == 2:
            statements.append(candidate)
            break
    return statements, pairs


def _nlvr2_line(rng, split, set_id, pair_index, sentence_index, statement, writer, label) -> dict:
    def other_label(agree_prob: float) -> str:
        return label if rng.random() < agree_prob else ("False" if label == "True" else "True")

    validator = str(rng.randrange(0, 170))
    extra = {} if split == "train" else {str(v): other_label(0.95) for v in rng.sample(range(170), 4)}
    line = {
        "validation": {validator: label},
        "sentence": statement.sentence,
        "left_url": f"{DEMO_HOST}/nlvr2/{split}-{set_id}-{pair_index}-img0.png",
        "writer": writer,
        "label": label,
        "right_url": f"{DEMO_HOST}/nlvr2/{split}-{set_id}-{pair_index}-img1.png",
        "synset": statement.synset,
        "query": f"some {sc.plural(statement.synset)}{set_id % 50}",
        "identifier": f"{split}-{set_id}-{pair_index}-{sentence_index}",
        "extra_validations": extra,
    }
    if split == "train":
        line["directory"] = set_id % 100
    return line


# --------------------------------------------------------------------------------------------- text corpus

SECTION_TITLES = ("Colors", "Shapes", "Positions", "Counting", "Relations", "Examples", "Sizes")


def _write_text(root: Path, rng: random.Random, world: _World, counts: dict[str, int]) -> dict:
    image_size, n_sentences = world.image_size, counts["sentences"]
    n_valid = max(5, round(n_sentences * 0.1))
    splits = {}
    for split, file_name, target in (
        ("train", "wiki.train.raw", n_sentences - n_valid),
        ("val", "wiki.valid.raw", n_valid),
    ):
        lines, written = [], 0
        while written < target:
            color, shape = rng.choice(sc.COLOR_NAMES), rng.choice(sc.SHAPES)
            # Like wikitext: the file opens with a blank line; later headings follow the previous blank line.
            lines += ([] if lines else [" \n"]) + [f" = {color.capitalize()} {sc.plural(shape)} = \n", " \n"]
            for section in rng.sample(SECTION_TITLES, rng.randint(1, 3)):
                lines += [f" = = {section} = = \n", " \n"]
                for _ in range(rng.randint(1, 3)):
                    n = min(rng.randint(3, 6), target - written)
                    if n <= 0:
                        break
                    paragraph = " ".join(sc.corpus_sentence(rng, image_size) for _ in range(n))
                    lines += [f" {paragraph} \n", " \n"]
                    written += n
        atomic_write_text(root / file_name, "".join(lines))
        splits[split] = {"sentences": written, "lines": len(lines)}
    return {"splits": splits}


# One writer per dataset, called in DATASETS order (coco before vqav2, whose questions are about COCO's scenes).
_WRITERS: dict[str, Callable[[Path, random.Random, _World, dict[str, int]], dict]] = {
    "coco": _write_coco,
    "f30k": _write_f30k,
    "vg": _write_vg,
    "cc3m": _write_cc3m,
    "sbu": _write_sbu,
    "vqav2": _write_vqav2,
    "nlvr2": _write_nlvr2,
    "text": _write_text,
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
    """``python -m vlmo_pipeline.data.demo_world --out DIR --images N --seed S``."""
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
