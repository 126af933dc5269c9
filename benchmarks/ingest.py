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
  parent + workers, both sampled every 50 ms with psutil (null without psutil);
* ``cpu_s_parent``: CPU seconds (user + system) of the ingest call in the parent (reader, writer, and with a local
  cluster the Dask scheduler, nannies and client, which live there); ``cpu_s_workers``: CPU seconds of the worker
  processes (getrusage of the reaped children, their start-up included; 0 when the ingest runs in-process).

    .venv/bin/python benchmarks/ingest.py --sizes 2000 20000 --workers 2

``--annotation-rss MB`` instead measures the annotation readers alone (issue 12): it writes a Karpathy-style
``dataset_coco.json`` of at least MB megabytes (full official-like entries: 5 sentences with tokens, ids) and, each
in a fresh process, reports the peak RSS (VmHWM) of ``json.load`` of that file, of the streaming reader (the
validating ``ijson`` pass plus a full iteration of the records, as an ingest consumes them), and of the streaming
reader on a small file of the same shape (``--demo-entries`` entries, the demo world's size):

    .venv/bin/python benchmarks/ingest.py --annotation-rss 300

``--records N [N ...]`` (issue 13) measures validated ingestion against a byte-copy baseline at large record
counts. For each N it writes a COCO Karpathy tree of N records (``--record-captions`` captions each, every tenth
record in ``test``, the rest in ``train``) whose images point, round robin, at a pool of ``--pool-size`` distinct
random-noise JPEGs (the Karpathy format lets several entries name one file), so the tree stays small (the pool plus
~150 bytes of JSON per record) while every record is still read and validated on its own. Then, each in a fresh
process, on the same tree:

* ``validated``: ``ingest_dataset("coco", ...)`` with ``--workers`` / ``--chunk-size`` / ``--shard-rows``, measured
  as in ``--sizes`` (``records_per_s``, ``peak_rss_parent_mb``, ``metadata_rss_mb``, ``streaming_overhead_mb``,
  ``peak_rss_worker_mb``, ``peak_rss_tree_mb``) plus ``peak_rss_each_child_mb``: the peak RSS of every child
  process seen by the sampler (the Dask workers, and any small helper such as multiprocessing's resource
  tracker), largest first;
* ``baseline``: what the official ViLT/VLMo ``write_*.py`` scripts do, without pandas: ``json.load`` of the
  annotation file, every record's image bytes (a plain ``open().read()``) and captions appended to Python lists
  per split, then one ``pyarrow.Table`` per split (same schema as the shards) written with one ``pyarrow.ipc``
  file write; no validation, no decoding, no fsync. Reported: ``records_per_s``, ``cpu_s`` and ``peak_rss_mb``
  (VmHWM). It holds every image in memory, so it is skipped (with the estimate) when ~2.3 x the image bytes plus
  ~1 KB per record would exceed ``--baseline-max-gb``;
* ``throughput_ratio`` = validated records/s / baseline records/s (the issue's target: >= 0.5 at 100k).

Both timings start after the interpreter and imports are up and include annotation parsing and the writes. The
pool is hot in the page cache, so this measures CPU cost, not disk reads. Outputs are deleted after each run.

    .venv/bin/python benchmarks/ingest.py --records 10000 100000 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
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


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _sampler(stop: threading.Event, peaks: dict) -> None:
    """Track the largest worker RSS, each child's peak RSS (``peaks["each"]``, by pid) and the largest parent +
    workers RSS sum until ``stop`` is set."""
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
            peaks["each"][process.pid] = max(peaks["each"].get(process.pid, 0.0), rss / 2**20)
        peaks["tree"] = max(peaks["tree"], total / 2**20)
        stop.wait(0.05)


def child_metadata(raw: str) -> None:
    """Only parse the annotations (as the ingest reader does) and print the peak RSS."""
    from vlmo_pipeline.data.ingest import IngestConfig, open_raw_source

    source = open_raw_source("coco", raw, IngestConfig())
    print(json.dumps({"metadata_rss_mb": round(_vm_hwm_mb() or 0.0, 1), "records": source.total}))


def child(raw: str, out: str, workers: int, shard_rows: int, chunk_size: int | None) -> None:
    """Run one ingest (in a fresh process) and print its measurements as JSON."""
    from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset

    peaks = {"worker": 0.0, "tree": 0.0, "each": {}}
    stop = threading.Event()
    sampler = None
    try:
        import psutil  # noqa: F401

        sampler = threading.Thread(target=_sampler, args=(stop, peaks), daemon=True)
        sampler.start()
    except ImportError:
        pass
    chunk = {} if chunk_size is None else {"chunk_size": chunk_size}
    config = IngestConfig(workers=workers, shard_rows=shard_rows, **chunk)
    cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    manifest = ingest_dataset("coco", raw, out, config, show_progress=False)
    seconds = time.perf_counter() - start
    cpu_parent = _cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    cpu_workers = _cpu_seconds(resource.RUSAGE_CHILDREN)  # the worker processes, reaped when the cluster closed
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
                "cpu_s_parent": round(cpu_parent, 2),
                "cpu_s_workers": round(cpu_workers, 2),
                "peak_rss_parent_mb": round(_vm_hwm_mb() or 0.0, 1),
                "peak_rss_worker_mb": round(peaks["worker"], 1) if sampler is not None else None,
                "peak_rss_tree_mb": round(peaks["tree"], 1) if sampler is not None else None,
                "peak_rss_each_child_mb": (
                    sorted((round(v, 1) for v in peaks["each"].values()), reverse=True) if sampler is not None else None
                ),
            }
        )
    )


def _run_child(*child_args: str) -> dict:
    """Run this script with ``child_args`` in a fresh Python process; return the JSON of its last stdout line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, __file__, *child_args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _chunk_args(args: argparse.Namespace) -> list[str]:
    """``--chunk-size N`` for a child when one was given (else the child uses IngestConfig's default)."""
    return [] if args.chunk_size is None else ["--chunk-size", str(args.chunk_size)]


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


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

    def run_child(path: Path, mode: str) -> dict:
        return _run_child("--child-annotation", str(path), mode)

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
        "machine": _machine(),
        **sizes,
        "results": results,
        "streaming_big_over_demo_mb": round(
            results["streaming_big"]["peak_rss_mb"] - results["streaming_demo"]["peak_rss_mb"], 1
        ),
        "json_load_over_streaming": round(
            results["json_load_big"]["peak_rss_mb"] / results["streaming_big"]["peak_rss_mb"], 2
        ),
    }


def write_record_tree(root: Path, n_records: int, pool_size: int, side: int, captions: int, seed: int = 0) -> dict:
    """COCO Karpathy layout: ``pool_size`` random-noise JPEGs and ``n_records`` entries naming them round robin
    (``captions`` sentences each, every tenth record in ``test``); returns the sizes written."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "train2014").mkdir(parents=True, exist_ok=True)
    pool = []
    for index in range(min(pool_size, n_records)):
        name = f"COCO_train2014_{index:012d}.jpg"
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "train2014" / name, format="JPEG", quality=90)
        pool.append((name, (root / "train2014" / name).stat().st_size))
    annotation = root / "karpathy" / "dataset_coco.json"
    annotation.parent.mkdir(exist_ok=True)
    referenced = 0
    with open(annotation, "w", encoding="utf-8") as handle:
        handle.write('{"images": [')
        for index in range(n_records):
            name, size = pool[index % len(pool)]
            referenced += size
            sentences = [{"raw": f"record {index} caption {k}", "tokens": []} for k in range(captions)]
            entry = {
                "filepath": "train2014",
                "filename": name,
                "cocoid": index,
                "split": "test" if index % 10 == 0 else "train",
                "sentences": sentences,
            }
            handle.write((", " if index else "") + json.dumps(entry))
        handle.write('], "dataset": "coco"}')
    return {
        "pool_images": len(pool),
        "pool_mb": round(sum(size for _, size in pool) / 2**20, 1),
        "annotation_mb": round(annotation.stat().st_size / 2**20, 1),
        "referenced_image_mb": round(referenced / 2**20, 1),
    }


def child_baseline(raw: str, out: str) -> None:
    """The byte-copy baseline (module docstring), in this fresh process; prints its measurements as JSON."""
    import pyarrow as pa

    from vlmo_pipeline.data.arrow_io import schema_for

    schema = schema_for("coco")
    cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with open(os.path.join(raw, "karpathy", "dataset_coco.json"), encoding="utf-8") as handle:
        document = json.load(handle)
    columns: dict[str, dict[str, list]] = {}
    for entry in document["images"]:
        with open(os.path.join(raw, entry["filepath"], entry["filename"]), "rb") as image:
            binary = image.read()
        split = entry["split"]
        lists = columns.setdefault(split, {name: [] for name in schema.names})
        lists["image"].append(binary)
        lists["caption"].append([sentence["raw"] for sentence in entry["sentences"]])
        lists["image_id"].append(entry["filename"])
        lists["split"].append(split)
    os.makedirs(out, exist_ok=True)
    rows, written = {}, 0
    for split, lists in columns.items():
        table = pa.Table.from_pydict(lists, schema=schema)
        path = os.path.join(out, f"coco_caption_karpathy_{split}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        rows[split] = table.num_rows
        written += os.path.getsize(path)
        del table
    seconds = time.perf_counter() - start
    total = sum(rows.values())
    print(
        json.dumps(
            {
                "rows": total,
                "splits": rows,
                "written_mb": round(written / 2**20, 1),
                "seconds": round(seconds, 2),
                "records_per_s": round(total / seconds, 1),
                "cpu_s": round(_cpu_seconds(resource.RUSAGE_SELF) - cpu_before, 2),
                "peak_rss_mb": round(_vm_hwm_mb() or 0.0, 1),
            }
        )
    )


def records_report(args: argparse.Namespace) -> dict:
    """The ``--records`` report (module docstring)."""
    results = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        for n_records in args.records:
            raw, out = Path(work) / f"raw_{n_records}", Path(work) / f"out_{n_records}"
            generated = time.perf_counter()
            tree = write_record_tree(raw, n_records, args.pool_size, args.image_side, args.record_captions)
            generated = time.perf_counter() - generated
            metadata = _run_child("--child-metadata", str(raw))
            validated = _run_child(
                "--child",
                str(raw),
                str(out / "validated"),
                "--workers",
                str(args.workers),
                "--shard-rows",
                str(args.shard_rows),
                *_chunk_args(args),
            )
            shutil.rmtree(out, ignore_errors=True)
            validated["records_per_s"] = validated.pop("images_per_s")
            validated["metadata_rss_mb"] = metadata["metadata_rss_mb"]
            validated["streaming_overhead_mb"] = round(validated["peak_rss_parent_mb"] - metadata["metadata_rss_mb"], 1)
            estimate_gb = (2.3 * tree["referenced_image_mb"] + n_records / 1024) / 1024
            if estimate_gb > args.baseline_max_gb:
                baseline = {
                    "skipped": f"estimated peak {estimate_gb:.1f} GB > --baseline-max-gb {args.baseline_max_gb}"
                }
                ratio = None
            else:
                baseline = _run_child("--child-baseline", str(raw), str(out / "baseline"))
                shutil.rmtree(out, ignore_errors=True)
                ratio = round(validated["records_per_s"] / baseline["records_per_s"], 3)
            shutil.rmtree(raw, ignore_errors=True)
            results.append(
                {
                    "records": n_records,
                    **tree,
                    "generate_seconds": round(generated, 1),
                    "validated": validated,
                    "baseline": baseline,
                    "throughput_ratio": ratio,
                    "meets_50pct_target": None if ratio is None else ratio >= 0.5,
                }
            )
    first, last = results[0], results[-1]
    both = [r for r in results if r["throughput_ratio"] is not None]
    return {
        "benchmark": "validated ingest (ingest_dataset coco) vs byte-copy baseline, Karpathy tree on an image pool",
        "machine": _machine(),
        "parameters": {
            "workers": args.workers,
            "chunk_size": args.chunk_size or "default (IngestConfig.chunk_size)",
            "shard_rows": args.shard_rows,
            "max_inflight_chunks": "default (2 per worker thread)",
            "image_side": args.image_side,
            "pool_size": args.pool_size,
            "captions_per_record": args.record_captions,
            "baseline_max_gb": args.baseline_max_gb,
        },
        "results": results,
        "input_growth": round(last["records"] / first["records"], 2),
        "validated_time_growth": round(last["validated"]["seconds"] / first["validated"]["seconds"], 2),
        "validated_parent_rss_growth_mb": round(
            last["validated"]["peak_rss_parent_mb"] - first["validated"]["peak_rss_parent_mb"], 1
        ),
        "validated_tree_rss_growth_mb": (
            round(last["validated"]["peak_rss_tree_mb"] - first["validated"]["peak_rss_tree_mb"], 1)
            if last["validated"]["peak_rss_tree_mb"] is not None
            else None
        ),
        "baseline_rss_growth_mb": (
            round(both[-1]["baseline"]["peak_rss_mb"] - both[0]["baseline"]["peak_rss_mb"], 1) if both else None
        ),
        "baseline_records_compared": [both[0]["records"], both[-1]["records"]] if both else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-side", type=int, default=64)
    parser.add_argument("--shard-rows", type=int, default=1000)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="records per worker task (default: IngestConfig.chunk_size)"
    )
    parser.add_argument(
        "--records",
        type=int,
        nargs="+",
        default=None,
        help="validated ingest vs byte-copy baseline on Karpathy trees of these many records (issue 13)",
    )
    parser.add_argument("--pool-size", type=int, default=4096, help="distinct images the records point at (--records)")
    parser.add_argument("--record-captions", type=int, default=1, help="captions per record (--records)")
    parser.add_argument(
        "--baseline-max-gb", type=float, default=12.0, help="skip the in-memory baseline above this estimated peak"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="where raw trees and shards go (temp dir)")
    parser.add_argument("--child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--child-metadata", metavar="RAW", help=argparse.SUPPRESS)
    parser.add_argument("--child-baseline", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
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
        child(args.child[0], args.child[1], args.workers, args.shard_rows, args.chunk_size)
        return 0
    if args.child_metadata:
        child_metadata(args.child_metadata)
        return 0
    if args.child_baseline:
        child_baseline(*args.child_baseline)
        return 0
    if args.records:
        print(json.dumps(records_report(args), indent=2))
        return 0

    results = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        for size in args.sizes:
            raw, out = Path(work) / f"raw_{size}", Path(work) / f"out_{size}"
            generated = time.perf_counter()
            image_bytes = write_raw_tree(raw, size, args.image_side)
            generated = time.perf_counter() - generated
            metadata = _run_child("--child-metadata", str(raw))
            measured = _run_child(
                "--child",
                str(raw),
                str(out),
                "--workers",
                str(args.workers),
                "--shard-rows",
                str(args.shard_rows),
                *_chunk_args(args),
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
        "machine": _machine(),
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
