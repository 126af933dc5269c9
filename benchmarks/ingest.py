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

``--annotation-rss MB`` instead measures the annotation readers alone (issue 12): it writes a Karpathy-style
``dataset_coco.json`` of at least MB megabytes (full official-like entries: 5 sentences with tokens, ids) and, each
in a fresh process, reports the peak RSS (VmHWM) of ``json.load`` of that file, of the streaming reader (the
validating ``ijson`` pass plus a full iteration of the records, as an ingest consumes them), and of the streaming
reader on a small file of the same shape (``--demo-entries`` entries, the demo world's size):

    .venv/bin/python benchmarks/ingest.py --annotation-rss 300
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
        entries.append(
            {"filepath": "train2014", "filename": name, "cocoid": index, "split": split, "sentences": sentences}
        )
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
    print(
        json.dumps(
            {
                "rows": rows,
                "shards": len(manifest["shards"]),
                "rejects": manifest["rejects"],
                "seconds": round(seconds, 2),
                "images_per_s": round(rows / seconds, 1),
                "peak_rss_parent_mb": round(_vm_hwm_mb() or 0.0, 1),
                "peak_rss_worker_mb": round(peaks["worker"], 1) if sampler is not None else None,
                "peak_rss_tree_mb": round(peaks["tree"], 1) if sampler is not None else None,
            }
        )
    )


def write_karpathy_json(path: Path, min_mb: float | None = None, entries: int | None = None) -> int:
    """A Karpathy-style file of official-like entries, until it holds ``entries`` entries or ``min_mb`` MB; returns
    the number of entries written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"images": [')
        while True:
            if entries is not None and written >= entries:
                break
            if min_mb is not None and handle.tell() >= min_mb * 2**20:
                break
            sentences = []
            for k in range(5):
                raw = f"A man number {written} rides caption {k} of a brown horse along the sandy beach."
                sentences.append(
                    {"tokens": raw[:-1].lower().split(), "raw": raw, "imgid": written, "sentid": written * 5 + k}
                )
            entry = {
                "filepath": "train2014",
                "sentids": list(range(written * 5, written * 5 + 5)),
                "filename": f"COCO_train2014_{written:012d}.jpg",
                "imgid": written,
                "split": "train" if written % 10 else "test",
                "sentences": sentences,
                "cocoid": written,
            }
            handle.write((", " if written else "") + json.dumps(entry))
            written += 1
        handle.write('], "dataset": "coco"}')
    return written


def child_annotation(path: str, mode: str) -> None:
    """Parse one Karpathy file in this (fresh) process and print the records seen, seconds and peak RSS."""
    from vlmo_pipeline.data.raw.karpathy import iter_karpathy_records, load_karpathy, open_karpathy_entries

    start = time.perf_counter()
    if mode == "json_load":
        entries = load_karpathy(Path(path))
    else:
        entries = open_karpathy_entries(Path(path))
    records = sum(
        1
        for _ in iter_karpathy_records(
            entries,
            Path(path),
            Path(path).parent,
            1000,
            use_filepath=True,
            allowed_splits=("train", "restval", "val", "test"),
        )
    )
    print(
        json.dumps(
            {
                "mode": mode,
                "records": records,
                "seconds": round(time.perf_counter() - start, 2),
                "peak_rss_mb": round(_vm_hwm_mb() or 0.0, 1),
            }
        )
    )


def annotation_rss(min_mb: float, demo_entries: int, work_dir: Path | None) -> dict:
    """The ``--annotation-rss`` report (module docstring)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}

    def run_child(path: Path, mode: str) -> dict:
        completed = subprocess.run(
            [sys.executable, __file__, "--child-annotation", str(path), mode],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(completed.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory(dir=work_dir) as work:
        big, demo = Path(work) / "big" / "dataset_coco.json", Path(work) / "demo" / "dataset_coco.json"
        generated = time.perf_counter()
        n_big = write_karpathy_json(big, min_mb=min_mb)
        generated = time.perf_counter() - generated
        n_demo = write_karpathy_json(demo, entries=demo_entries)
        results = {
            "streaming_demo": run_child(demo, "streaming"),
            "streaming_big": run_child(big, "streaming"),
            "json_load_big": run_child(big, "json_load"),
        }
        sizes = {
            "big_mb": round(big.stat().st_size / 2**20, 1),
            "big_entries": n_big,
            "demo_kb": round(demo.stat().st_size / 2**10, 1),
            "demo_entries": n_demo,
            "generate_seconds": round(generated, 1),
        }
    return {
        "benchmark": "Karpathy annotation parsing: json.load vs ijson streaming (peak RSS of a fresh process)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **sizes,
        "results": results,
        "streaming_big_over_demo_mb": round(
            results["streaming_big"]["peak_rss_mb"] - results["streaming_demo"]["peak_rss_mb"], 1
        ),
        "json_load_over_streaming": round(
            results["json_load_big"]["peak_rss_mb"] / results["streaming_big"]["peak_rss_mb"], 2
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-side", type=int, default=64)
    parser.add_argument("--shard-rows", type=int, default=1000)
    parser.add_argument("--work-dir", type=Path, default=None, help="where raw trees and shards go (temp dir)")
    parser.add_argument("--child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--child-metadata", metavar="RAW", help=argparse.SUPPRESS)
    parser.add_argument(
        "--annotation-rss",
        type=float,
        metavar="MB",
        default=None,
        help="measure annotation parsing memory on a generated Karpathy JSON of at least MB MB",
    )
    parser.add_argument("--demo-entries", type=int, default=400, help="entries of the small file (--annotation-rss)")
    parser.add_argument("--child-annotation", nargs=2, metavar=("JSON", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_annotation:
        child_annotation(*args.child_annotation)
        return 0
    if args.annotation_rss is not None:
        print(json.dumps(annotation_rss(args.annotation_rss, args.demo_entries, args.work_dir), indent=2))
        return 0
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
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
            }

            def run_child(*child_args: str, env: dict = env) -> dict:
                completed = subprocess.run(
                    [sys.executable, __file__, *child_args], env=env, capture_output=True, text=True, check=True
                )
                return json.loads(completed.stdout.strip().splitlines()[-1])

            metadata = run_child("--child-metadata", str(raw))
            measured = run_child(
                "--child", str(raw), str(out), "--workers", str(args.workers), "--shard-rows", str(args.shard_rows)
            )
            overhead = measured["peak_rss_parent_mb"] - metadata["metadata_rss_mb"]
            results.append(
                {
                    "images": size,
                    "image_mb": round(image_bytes / 2**20, 1),
                    "generate_seconds": round(generated, 1),
                    **measured,
                    "metadata_rss_mb": metadata["metadata_rss_mb"],
                    "streaming_overhead_mb": round(overhead, 1),
                }
            )
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
