"""A tiny demo world (generated, ingested to Arrow, with a trained vocabulary) and tiny run configurations.

Built once per test session (a few seconds) and shared by the training tests; every run writes below its own
``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vlmo_pipeline.data.demo import generate_demo_world
from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.training.config import RunConfig, run_config_from_dict
from vlmo_pipeline.training.vocab import VocabConfig, build_vocab

DATASETS = ("coco", "f30k", "vg", "cc3m", "sbu", "vqav2", "nlvr2", "text")
_CACHE: dict[str, Path] = {}


def build_tiny_world(root: Path, n_images: int = 8) -> Path:
    """Generate + ingest the demo world with ``n_images`` into ``root``; return the Arrow root (03_primary)."""
    raw, primary = root / "raw", root / "primary"
    generate_demo_world(raw, n_images=n_images, seed=0, image_size=64, show_progress=False)
    config = IngestConfig(workers=0, min_answer_count=1)
    for name in DATASETS:
        image_root = raw / "coco" if name == "vqav2" else None
        ingest_dataset(name, raw / name, primary / name, config=config, image_root=image_root, show_progress=False)
    build_vocab(
        VocabConfig(
            vocab_size=400, corpora={"text": ["train"], "coco": ["train"], "vqav2": ["train"], "nlvr2": ["train"]}
        ),
        {name: primary / name for name in DATASETS},
        root / "vocab",
    )
    return primary


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """Arrow root of the shared tiny world (``<root>/vocab/vocab.txt`` beside it)."""
    if "primary" not in _CACHE:
        _CACHE["primary"] = build_tiny_world(tmp_path_factory.mktemp("tiny_world"))
    return _CACHE["primary"]


STAGE_DATASETS: dict[str, dict[str, list[str]]] = {
    "stage1": {"coco": ["train"]},
    "stage2": {"text": ["train"]},
    "stage3": {"coco": ["train"], "vg": ["train"]},
    "retrieval": {"coco": ["train"]},
    "vqa": {"vqav2": ["train"]},
    "nlvr2": {"nlvr2": ["train"]},
}


def tiny_run(
    stage: str,
    primary: Path,
    workdir: Path,
    init: str | Path = "vlmo_tiny",
    name: str | None = None,
    steps: int = 2,
    **overrides: Any,
) -> RunConfig:
    """A few-step, batch-4 run of ``stage`` on the tiny world, writing below ``workdir``."""
    name = name or stage
    values: dict[str, Any] = {
        "stage": stage,
        "name": name,
        "init": str(init),
        "output_dir": str(workdir / "models" / name),
        "log_dir": str(workdir / "reports" / name),
        "model_overrides": {"drop_path_rate": 0.0},
        "data": {
            "root": str(primary),
            "datasets": STAGE_DATASETS[stage],
            "batch_size": 4,
            "max_text_len": 32,
            "hflip": False,
        },
        "optim": {"lr": 1e-3, "warmup": 1},
        "trainer": {"max_steps": steps, "log_every_n_steps": 1, "progress_bar": False, "checkpoint_every_n_steps": 1},
    }
    if stage == "stage1":
        values["vocab_file"] = str(primary.parent / "vocab" / "vocab.txt")
    values.update(overrides)
    return run_config_from_dict(values, where=f"test run {name}")
