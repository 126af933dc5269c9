"""Ingestion on Dask (issue 13): a real LocalCluster, and a real `dask scheduler` + `dask worker` pair.

Every case compares the shards and the reject log with the in-process result (``workers=0``): same bytes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlmo_pipeline.data.ingest import (
    IngestConfig,
    IngestWorkerError,
    dask_client,
    ingest_dataset,
    materialize,
    process_items,
)
from vlmo_pipeline.data.raw.records import ImageSource, RawRecord, Reject

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

DASK = Path(sys.executable).with_name("dask")
# chunk_size 3 over 30 records: 10 tasks, at most 2 in flight.
DASK_CONFIG = {"workers": 2, "chunk_size": 3, "max_inflight_chunks": 2, "shard_rows": 7, "worker_memory_limit": "1GiB"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A COCO tree of 30 images (two sizes) with two missing files: rows and rejects."""
    root = tmp_path_factory.mktemp("dask_world") / "coco"
    specs = [("train" if i % 4 else "val", "train2014", i, [f"caption {i}", f"other {i}"]) for i in range(1, 31)]
    raw_trees.coco_tree(root, specs)
    for index in (5, 17):
        (root / "train2014" / f"COCO_train2014_{index:012d}.jpg").unlink()
    return root


@pytest.fixture(scope="module")
def serial(world, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("serial")
    ingest_dataset("coco", world, out, IngestConfig(workers=0, shard_rows=7), show_progress=False)
    return _files(out)


def _files(out: Path) -> dict[str, bytes]:
    """Every written file but the manifest (which holds the parameters and a timestamp)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.json"}


def test_local_cluster_writes_the_same_bytes_as_in_process(world, serial, tmp_path):
    manifest = ingest_dataset("coco", world, tmp_path / "out", IngestConfig(**DASK_CONFIG), show_progress=False)
    assert manifest["rejects"] == 2 and len(manifest["shards"]) > 2
    assert manifest["parameters"]["cluster"] == "local" and manifest["parameters"]["retries"] == 1
    written = _files(tmp_path / "out")
    assert written.keys() == serial.keys() and written == serial


@pytest.fixture
def scheduler_pair(tmp_path):
    """A real `dask scheduler` on 127.0.0.1 (port chosen by the OS, no dashboard) and one `dask worker`."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    common = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        + ["--scheduler-file", str(scheduler_file)],
        **common,
    )
    processes = [scheduler]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            assert scheduler.poll() is None and time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        worker = subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1"]
            + ["--nworkers", "2", "--nthreads", "1", "--no-dashboard", "--memory-limit", "1GiB"],
            **common,
        )
        processes.append(worker)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        yield address
    finally:
        # Shut down the pair we started: the worker's process group (nanny + worker processes) first, then the
        # scheduler (a graceful SIGTERM of the worker takes seconds).
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL if process is not scheduler else signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow
def test_scheduler_address_uses_the_existing_cluster_and_leaves_it_running(world, serial, scheduler_pair, tmp_path):
    from distributed import Client

    config = IngestConfig(**{**DASK_CONFIG, "cluster": scheduler_pair})
    with Client(scheduler_pair) as watcher:
        watcher.wait_for_workers(2, timeout=30)
        manifest = ingest_dataset("coco", world, tmp_path / "out", config, show_progress=False)
        assert manifest["parameters"]["cluster"] == scheduler_pair
        assert _files(tmp_path / "out") == serial
        # Only the ingestion's client was closed: the scheduler and its workers still serve.
        assert len(watcher.scheduler_info()["workers"]) == 2
        assert watcher.submit(sum, [1, 2]).result(timeout=30) == 3


def _records(tmp_path: Path, broken: int | None = None, count: int = 24):
    image = raw_trees.write(tmp_path / "a.jpg", raw_trees.image_bytes())
    for index in range(count):
        if index % 7 == 3:
            yield Reject(f"r{index}", "reader", "empty_caption")
            continue
        # ImageSource(None): a genuinely broken record (a reader bug), not a hostile file: TypeError on the worker.
        path = None if index == broken else str(image if index % 5 else tmp_path / "gone.jpg")
        yield RawRecord(f"r{index}", "train", "reader", {"image_id": f"r{index}"}, {"image": ImageSource(path)})


@pytest.fixture(scope="module")
def local_client():
    with dask_client(IngestConfig(workers=2)) as client:
        yield client


def test_worker_error_names_dataset_and_chunk(local_client, tmp_path):
    config = IngestConfig(workers=2, chunk_size=4, max_inflight_chunks=2, retries=1)
    with pytest.raises(IngestWorkerError) as caught:
        list(process_items(_records(tmp_path, broken=9), config, name="coco", client=local_client))
    message = str(caught.value)
    assert "[ingest coco] chunk 2 (records r8 .. r11)" in message
    assert "after 1 retries" in message and "TypeError" in message
    assert isinstance(caught.value.__cause__, TypeError)
    # The cluster survives the failed run.
    assert local_client.submit(sum, [2, 3]).result(timeout=30) == 5


@pytest.mark.slow
def test_killed_worker_mid_run_still_gives_every_result_in_order(local_client, tmp_path):
    """SIGKILL one worker process after the first results: its tasks are re-run elsewhere (the nanny restarts
    the worker), the output is complete and in input order."""
    options = IngestConfig(workers=0).image_options
    expected = [materialize(item, options) for item in _records(tmp_path, count=60)]
    config = IngestConfig(workers=2, chunk_size=2, max_inflight_chunks=4)
    pids = local_client.run(os.getpid)
    results = []
    for result in process_items(_records(tmp_path, count=60), config, name="coco", client=local_client):
        results.append(result)
        if len(results) == 3:
            os.kill(next(iter(pids.values())), signal.SIGKILL)
    assert results == expected
    local_client.wait_for_workers(2, timeout=30)


def test_two_image_records_and_reject_only_chunks_match_in_process(local_client, tmp_path):
    """Workers get only image locations and send back bytes or reject reasons; the parent assembles the rows.
    A record is rejected for its first rejected image in column order (as in process), and a chunk holding
    only reader rejects (no task at all) keeps its place in the output."""
    good = raw_trees.write(tmp_path / "a.jpg", raw_trees.image_bytes())
    broken = raw_trees.write(tmp_path / "b.jpg", raw_trees.image_bytes()[:60])
    gone = tmp_path / "gone.jpg"

    def records():
        for index in range(40):
            if 8 <= index < 16:  # chunks 2 and 3 (chunk_size 4) hold only rejects
                yield Reject(f"r{index}", "reader", "empty_caption", split="train")
                continue
            first, second = [(good, good), (gone, broken), (broken, gone), (good, broken)][index % 4]
            images = {"image_0": ImageSource(str(first)), "image_1": ImageSource(str(second))}
            yield RawRecord(f"r{index}", "dev", "reader", {"identifier": f"r{index}"}, images)

    options = IngestConfig(workers=0).image_options
    expected = [materialize(item, options) for item in records()]
    config = IngestConfig(workers=2, chunk_size=4, max_inflight_chunks=3)
    results = list(process_items(records(), config, name="nlvr2", client=local_client))
    assert results == expected
    rejected = [(r.source, r.split) for r in results[1:4]]
    assert rejected == [(str(gone), "dev"), (str(broken), "dev"), (str(broken), "dev")]
    assert results[1].reason == "missing_file" and results[0][1]["image_1"] == good.read_bytes()
