"""Ingest throughput and peak memory for growing inputs; prints one JSON object.

For each size N it writes a COCO Karpathy raw tree of N small JPEGs (random-noise pixels, so they do not
compress to nothing), then runs ``ingest_dataset("coco", ...)`` in a fresh Python process and reports:

* ``images_per_s``: ingested rows per second of the ingest call (reading, validating, writing shards);
* ``peak_rss_parent_mb``: VmHWM of the process running the reader and the writer (/proc/self/status);
* ``metadata_rss_mb``: VmHWM of a separate fresh process that only parses the annotation file (what any
  reader must hold: the parsed Karpathy JSON grows with N by design);
* ``streaming_overhead_mb`` = peak_rss_parent_mb - metadata_rss_mb: the memory the streaming ingest adds on
  top of the parsed metadata (in-flight chunks, record batches, pool bookkeeping): this is what must stay flat;
* ``peak_rss_worker_mb``: the largest RSS of any worker process, and ``peak_rss_tree_mb``: the largest sum over
  parent + workers, both sampled every 50 ms with psutil (null without psutil).

    .venv/bin/python benchmarks/ingest.py --sizes 2000 20000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_raw_tree(root: Path, n_images: int, side: int, seed: int = 0) -> int:
    """COCO Karpathy layout with ``n_images`` JPEGs (5 captions each); returns the bytes of image data written."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "train2014").mkdir(parents=True, exist_ok=True)
    entries, total_bytes = [], 0
    for index in range(n_images):
        name = f"COCO_train2014_{index:012d}.jpg"
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        path = root / "train2014" / name
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)
        total_bytes += path.stat().st_size
        split = "test" if index % 10 == 0 else "train"
        sentences = [{"raw": f"picture {index} caption {k}", "tokens": []} for k in range(5)]
        entries.append({"filepath": "train2014", "filename": name, "cocoid": index, "split": split,
                        "sentences": sentences})
    (root / "karpathy").mkdir(exist_ok=True)
    (root / "karpathy" / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    return total_bytes


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _sampler(stop: threading.Event, peaks: dict[str, float]) -> None:
    """Track the largest worker RSS and the largest parent + workers RSS sum until ``stop`` is set."""
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        total = me.memory_info().rss
        for process in me.children(recursive=True):
            try:
                rss = process.memory_info().rss
            except psutil.Error:  # a worker that just exited
                continue
            total += rss
            peaks["worker"] = max(peaks["worker"], rss / 2**20)
        peaks["tree"] = max(peaks["tree"], total / 2**20)
        stop.wait(0.05)


def child_metadata(raw: str) -> None:
    """Only parse the annotations (as the ingest reader does) and print the peak RSS."""
    from vlmo_pipeline.data.ingest import IngestConfig, open_raw_source

    source = open_raw_source("coco", raw, IngestConfig())
    print(json.dumps({"metadata_rss_mb": round(_vm_hwm_mb() or 0.0, 1), "records": source.total}))


def child(raw: str, out: str, workers: int, shard_rows: int) -> None:
    """Run one ingest (in a fresh process) and print its measurements as JSON."""
    from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset

    peaks = {"worker": 0.0, "tree": 0.0}
    stop = threading.Event()
    sampler = None
    try:
        import psutil  # noqa: F401

        sampler = threading.Thread(target=_sampler, args=(stop, peaks), daemon=True)
        sampler.start()
    except ImportError:
        pass
    config = IngestConfig(workers=workers, shard_rows=shard_rows)
    start = time.perf_counter()
    manifest = ingest_dataset("coco", raw, out, config, show_progress=False)
    seconds = time.perf_counter() - start
    stop.set()
    if sampler is not None:
        sampler.join()
    rows = sum(manifest["splits"].values())
    print(json.dumps({
        "rows": rows,
        "shards": len(manifest["shards"]),
        "rejects": manifest["rejects"],
        "seconds": round(seconds, 2),
        "images_per_s": round(rows / seconds, 1),
        "peak_rss_parent_mb": round(_vm_hwm_mb() or 0.0, 1),
        "peak_rss_worker_mb": round(peaks["worker"], 1) if sampler is not None else None,
        "peak_rss_tree_mb": round(peaks["tree"], 1) if sampler is not None else None,
    }))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-side", type=int, default=64)
    parser.add_argument("--shard-rows", type=int, default=1000)
    parser.add_argument("--work-dir", type=Path, default=None, help="where raw trees and shards go (temp dir)")
    parser.add_argument("--child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--child-metadata", metavar="RAW", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.workers, args.shard_rows)
        return 0
    if args.child_metadata:
        child_metadata(args.child_metadata)
        return 0

    results = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        for size in args.sizes:
            raw, out = Path(work) / f"raw_{size}", Path(work) / f"out_{size}"
            generated = time.perf_counter()
            image_bytes = write_raw_tree(raw, size, args.image_side)
            generated = time.perf_counter() - generated
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                              os.environ.get("PYTHONPATH")]))}
            def run_child(*child_args: str) -> dict:
                completed = subprocess.run([sys.executable, __file__, *child_args], env=env, capture_output=True,
                                           text=True, check=True)
                return json.loads(completed.stdout.strip().splitlines()[-1])

            metadata = run_child("--child-metadata", str(raw))
            measured = run_child("--child", str(raw), str(out), "--workers", str(args.workers),
                                 "--shard-rows", str(args.shard_rows))
            overhead = measured["peak_rss_parent_mb"] - metadata["metadata_rss_mb"]
            results.append({"images": size, "image_mb": round(image_bytes / 2**20, 1),
                            "generate_seconds": round(generated, 1), **measured,
                            "metadata_rss_mb": metadata["metadata_rss_mb"],
                            "streaming_overhead_mb": round(overhead, 1)})
    first, last = results[0], results[-1]
    report = {
        "benchmark": "ingest coco (Karpathy layout), validate every image, write Arrow shards",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "workers": args.workers,
        "image_side": args.image_side,
        "shard_rows": args.shard_rows,
        "results": results,
        "input_growth": round(last["images"] / first["images"], 2),
        "parent_rss_growth": round(last["peak_rss_parent_mb"] / first["peak_rss_parent_mb"], 3),
        "streaming_overhead_growth_mb": round(last["streaming_overhead_mb"] - first["streaming_overhead_mb"], 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
