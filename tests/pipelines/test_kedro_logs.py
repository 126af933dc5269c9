"""The console output of a real `kedro run` of a training pipeline (as `dvc repro` shows it): one line per event.

Before: every Lightning record printed twice (Lightning's own ``INFO: ...`` handler and the project's), the
per-run banner (GPU/TPU available, litlogger tip), a torch ``_pytree`` deprecation warning, Kedro's "No typed
parameter requirements found" and an epoch progress bar reading "Epoch 0/-2". The run here is a subprocess whose
output is a pipe (not a TTY), as under DVC or CI: progress must come as readable log lines in steps of max_steps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
NOISE = (
    "No typed parameter requirements",
    "litlogger",
    "GPU available",
    "TPU available",
    "LeafSpec",
    "Epoch 0/",
    "`Trainer.fit` stopped",
)


def _prepare(project: Path) -> None:
    """Tiny demo world, Arrow datasets and vocabulary, in-process (their output is not what is tested)."""
    params = {
        "demo_data": {"n_images": 8, "show_progress": False},
        "ingest": {"workers": 0, "min_answer_count": 1},
        "vocab": {"vocab_size": 400},
    }
    bootstrap_project(project)
    for pipeline in ("demo_data", "ingest", "vocab"):
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            session.run(pipeline_name=pipeline)


def test_training_run_prints_each_event_once(kedro_project: Path):
    _prepare(kedro_project)
    section = "pretrain_stage1"
    params = ",".join(
        f"{section}.{key}"
        for key in (
            "data.batch_size=4",
            "optim.warmup=1",
            "trainer.max_steps=2",
            "trainer.log_every_n_steps=1",
            "trainer.progress_bar=true",
        )
    )
    env = {key: value for key, value in os.environ.items() if key not in ("VLMO_PROGRESS", "KEDRO_LOGGING_CONFIG")}
    env["KEDRO_DISABLE_TELEMETRY"] = "true"
    completed = subprocess.run(
        [sys.executable, "-m", "kedro", "run", f"--pipeline={section}", "--params", params],
        cwd=kedro_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    lines = [line for line in output.splitlines() if line.strip()]

    assert not [line for line in lines if re.match(r"^(DEBUG|INFO|WARNING|ERROR): ", line)], (
        "Lightning's own handler still prints"
    )
    messages = Counter(TIMESTAMP.sub("", line) for line in lines)
    assert [message for message, count in messages.items() if count > 1] == []
    for noise in NOISE:
        assert noise not in output, noise
    assert not [line for line in lines if "\r" in line or "━" in line], "a carriage-return bar in a log"
    assert not [line for line in lines if " WARNING " in line], "a correct run warns"

    progress = [line for line in lines if "vlmo_pipeline.progress: stage1: step " in line]
    assert progress and re.search(
        r"stage1: step 2/2 \(100 %\), loss [\d.]+, [\d.]+ steps/s, [\d.]+ samples/s, took ", progress[-1]
    ), progress
    summary = [line for line in lines if "vlmo_pipeline.training.runner: stage1: 2 steps in " in line]
    assert len(summary) == 1 and "cpu" in summary[0]
    assert sum("parameters trainable" in line for line in lines) == 1
    assert len(lines) <= 30, "\n".join(lines)

    reporting = kedro_project / "data" / "08_reporting" / "stage1"
    assert {"trainable_parameters.md", "trainable_parameters.json", "training_summary.json", "hparams.yaml"} <= {
        path.name for path in reporting.iterdir()
    }


def test_ingestion_on_the_local_dask_cluster_is_quiet(kedro_project: Path):
    """`kedro run --pipeline=ingest_coco` with 2 Dask workers: no Dask start-up / shutdown lines (about 60 per
    dataset), no "Using conf/logging.yml" from the worker processes, progress as log lines, one summary line."""
    bootstrap_project(kedro_project)
    with KedroSession.create(
        project_path=kedro_project, runtime_params={"demo_data": {"n_images": 16, "show_progress": False}}
    ) as session:
        session.run(pipeline_name="demo_data")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLMO_", "DASK_", "KEDRO_LOG"))}
    env["KEDRO_DISABLE_TELEMETRY"] = "true"
    # chunks of 4 records: more than two chunks, so the records go through the cluster (not the in-process path)
    params = "ingest.workers=2,ingest.chunk_size=4,ingest.min_answer_count=1"
    completed = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipeline=ingest_coco", "--params", params],
        cwd=kedro_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "distributed." not in output, [line for line in output.splitlines() if "distributed." in line][:5]
    assert "Using 'conf/logging.yml'" not in output
    assert not [line for line in output.splitlines() if "\r" in line or "█" in line], "a tqdm bar in a log"
    assert re.search(r"ingest coco: row \d+/\d+ \(100 %\)", output), output[-2000:]
    assert output.count("[ingest coco] rows:") == 1
