"""Raw dataset → Arrow shards: the streaming, bounded-memory ingest driver.

(About 720 lines: the driver, its Dask tasks and the outcome checks share one record stream and one failure
path (the reject log, ``ingest_failed.json``, the cluster shut down on any error); splitting them would split that
path.)

Flow for one dataset (``ingest_dataset``):

1. the family reader parses the annotation files (metadata only; a missing file or wrong layout raises
   :class:`~vlmo_pipeline.data.raw.records.RawLayoutError` before anything in ``out_dir`` is touched);
2. ``out_dir`` is cleaned of the previous run's manifest, shards, reject log and stale temporary files;
3. records stream from the reader in a deterministic order, in chunks; each chunk's image locations go as one
   task to a Dask worker that reads and validates the image bytes (a local cluster started for the run, or an
   existing cluster given by its scheduler address; at most ``max_inflight_chunks`` chunks exist at once, results
   come back in submission order) while the records' text fields wait in the parent;
4. the parent assembles the rows, appends them to per-split :class:`~vlmo_pipeline.data.arrow_io.ShardWriter` s
   (shards published by atomic rename as they fill) and rejects to ``rejects.jsonl``;
5. artifacts (e.g. the VQA answer vocabulary) and finally ``manifest.json`` are written atomically, and a
   one-line summary is printed;
6. unless the outcome checks fail (:func:`check_outcome`: a split that had input but kept no row, or a reject
   rate above ``max_reject_rate``): then the shards and ``rejects.jsonl`` are kept for inspection, no manifest is
   written (the folder reads as incomplete), ``ingest_failed.json`` holds the summary, and
   :class:`IngestOutcomeError` is raised.

Peak memory is bounded by the in-flight chunks plus one record batch per split, whatever the input size; only
the parsed annotation metadata grows with the dataset.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vlmo_pipeline.data.arrow_io import (
    REJECTS_NAME,
    SCHEMA_VERSION,
    RejectLog,
    SplitWriters,
    prepare_output_dir,
    schema_for,
    shard_infos_to_json,
    write_json_atomic,
    write_manifest,
)
from vlmo_pipeline.data.images import DEFAULT_MAX_PIXELS, ImageOptions, ImageRejected, load_image
from vlmo_pipeline.data.raw import (
    open_cc3m,
    open_coco,
    open_f30k,
    open_nlvr2,
    open_sbu,
    open_text,
    open_vg,
    open_vqav2,
)
from vlmo_pipeline.data.raw.records import ImageSource, RawItem, RawSource, Reject
from vlmo_pipeline.data.raw.safe_io import DEFAULT_MAX_IMAGE_BYTES
from vlmo_pipeline.data.registry import DATASETS
from vlmo_pipeline.progress import Progress

FAILURE_NAME = "ingest_failed.json"
#: The progress bar advances once per this many written rows: a per-row update (postfix and rate) cost about as
#: much as writing the row.
PROGRESS_ROWS = 64


class IngestOutcomeError(RuntimeError):
    """An ingest run whose outcome checks failed; ``summary`` is what ``ingest_failed.json`` holds."""

    def __init__(self, message: str, summary: dict[str, Any]):
        self.summary = summary
        super().__init__(message)


class IngestWorkerError(RuntimeError):
    """A chunk of records failed on a Dask worker (after its retries): names the dataset, chunk and records."""


#: ``IngestConfig.cluster`` value that starts a :class:`distributed.LocalCluster` for the run.
LOCAL_CLUSTER = "local"


@dataclass(frozen=True)
class IngestConfig:
    """Parameters of one ingest run (all recorded in the manifest).

    shard_rows / shard_bytes: a shard is closed when it reaches either limit (payload bytes, before Arrow
    overhead); one of them may be None. batch_rows: rows per Arrow record batch inside a shard.
    workers: Dask worker processes that read/validate images (0, 1 with a local cluster, or an input of at most
    two chunks: in this process, no cluster — starting one would cost more than it saves).
    cluster: ``"local"`` (a :class:`distributed.LocalCluster` of ``workers`` processes with one thread each, bound
    to 127.0.0.1 without dashboard, started and closed by the run) or the scheduler address of an existing
    cluster (``tcp://host:8786``: the run connects a client, and closes only that client). retries: times a
    failed chunk is re-run on the cluster before the run fails (:class:`IngestWorkerError`).
    worker_memory_limit: memory limit of each local worker (``"2GiB"``, bytes, or None for Dask's ``"auto"``).
    chunk_size: records per task sent to a worker (512: per-task costs in the parent — submit, scheduler
    transitions, messages — are then a few µs per record); max_inflight_chunks: tasks alive at once (None: 2 per
    worker thread) — together they bound memory.
    max_image_side: downscale + JPEG re-encode images whose longer side is larger (None: keep original bytes);
    jpeg_quality: quality of that re-encode. max_image_pixels: width*height above this is a decompression bomb.
    max_caption_chars: longer captions/questions/sentences are rejected. min_answer_count / vqa_vocab_splits:
    VQA answer vocabulary (spec §5.3: ≥9 over train+val). vqav2_rest_val_images / vqav2_rest_val_seed: > 0 writes
    VQA val as ``trainable_val`` + ``rest_val`` (that many val images, a seeded choice; spec §5.3: 1,000) instead
    of ``val``; 0 keeps val whole.
    max_image_bytes: an image file (or tar member) larger than this is a ``too_large`` reject (at most this + 1
    bytes are ever read). allow_outside_symlinks: follow symlinks whose target lies outside the dataset root
    (default off: ``outside_root`` reject). exif_transpose: store images with an EXIF orientation upright
    (re-encoded as lossless PNG). max_reject_rate: the run fails when more than this fraction of a split's rows
    (or of the dataset's) is rejected, or when a split with input keeps no row (see :func:`check_outcome`).
    num_partitions / partition: > 1 splits the run across independent machines without a shared scheduler: this
    run keeps only the items (records and rejects) at positions ``partition``, ``partition + num_partitions``, ...
    of the reader's stream (each in exactly one partition), after a full metadata pass, so dataset-wide facts (the
    VQA answer vocabulary, the rest_val carve) are those of the whole input; ``vlmo merge-manifests`` assembles
    the parts (:mod:`vlmo_pipeline.data.partitions`). 1 (the default): the whole dataset, as before.
    """

    shard_rows: int | None = 5000
    shard_bytes: int | None = 256 << 20
    batch_rows: int = 256
    workers: int = 2
    cluster: str = LOCAL_CLUSTER
    retries: int = 1
    worker_memory_limit: str | int | None = "2GiB"
    chunk_size: int = 512
    max_inflight_chunks: int | None = None
    max_image_side: int | None = None
    jpeg_quality: int = 90
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_caption_chars: int = 1000
    min_answer_count: int = 9
    vqa_vocab_splits: tuple[str, ...] = field(default=("train", "val"))
    vqav2_rest_val_images: int = 0
    vqav2_rest_val_seed: int = 0
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    allow_outside_symlinks: bool = False
    exif_transpose: bool = True
    max_reject_rate: float = 0.5
    num_partitions: int = 1
    partition: int = 0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.cluster != LOCAL_CLUSTER and "://" not in str(self.cluster):
            raise ValueError(
                f"cluster must be {LOCAL_CLUSTER!r} or a Dask scheduler address such as 'tcp://host:8786', "
                f"got {self.cluster!r}"
            )
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.max_inflight_chunks is not None and self.max_inflight_chunks < 1:
            raise ValueError(f"max_inflight_chunks must be >= 1 or None, got {self.max_inflight_chunks}")
        if self.chunk_size < 1 or self.batch_rows < 1:
            raise ValueError("chunk_size and batch_rows must be >= 1")
        if self.shard_rows is None and self.shard_bytes is None:
            raise ValueError("set shard_rows or shard_bytes (or both)")
        if self.max_image_side is not None and self.max_image_side < 1:
            raise ValueError(f"max_image_side must be >= 1 or None, got {self.max_image_side}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.max_image_pixels < 1 or self.max_caption_chars < 1 or self.min_answer_count < 1:
            raise ValueError("max_image_pixels, max_caption_chars and min_answer_count must be >= 1")
        if self.vqav2_rest_val_images < 0:
            raise ValueError(
                f"vqav2_rest_val_images must be >= 0 (0 = keep val whole); got {self.vqav2_rest_val_images}"
            )
        if self.max_image_bytes < 1:
            raise ValueError(f"max_image_bytes must be >= 1, got {self.max_image_bytes}")
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise ValueError(
                f"max_reject_rate must be in [0, 1] (1 = only a split without any kept row fails), "
                f"got {self.max_reject_rate}"
            )
        if self.num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1 (1 = no partitioning), got {self.num_partitions}")
        if not 0 <= self.partition < self.num_partitions:
            raise ValueError(
                f"partition must be in 0..num_partitions-1 = 0..{self.num_partitions - 1}, got {self.partition}"
            )
        # Accept a list from YAML/Kedro parameters but keep the dataclass hashable.
        object.__setattr__(self, "vqa_vocab_splits", tuple(self.vqa_vocab_splits))

    @property
    def image_options(self) -> ImageOptions:
        return ImageOptions(
            self.max_image_pixels,
            self.max_image_side,
            self.jpeg_quality,
            self.max_image_bytes,
            self.allow_outside_symlinks,
            self.exif_transpose,
        )


# --- readers ----------------------------------------------------------------------------------------------------


def open_raw_source(
    name: str,
    raw_root: str | os.PathLike,
    config: IngestConfig,
    image_root: str | os.PathLike | None = None,
    reader_options: Mapping[str, Any] | None = None,
) -> RawSource:
    """Open dataset ``name``'s reader on ``raw_root`` (``reader_options`` go to its ``open_*`` function)."""
    options = dict(reader_options or {})
    common = {"max_caption_chars": config.max_caption_chars}
    if name == "vqav2":
        return open_vqav2(
            raw_root,
            image_root=image_root,
            min_answer_count=config.min_answer_count,
            vocab_splits=config.vqa_vocab_splits,
            rest_val_images=config.vqav2_rest_val_images,
            rest_val_seed=config.vqav2_rest_val_seed,
            **common,
            **options,
        )
    if image_root is not None:
        raise ValueError(f"image_root is only used by vqav2, not {name!r}")
    if name in ("cc3m", "sbu", "text"):  # readers that open files themselves (captions, corpus files)
        common["allow_outside_symlinks"] = config.allow_outside_symlinks
    openers = {
        "coco": open_coco,
        "f30k": open_f30k,
        "vg": open_vg,
        "cc3m": open_cc3m,
        "sbu": open_sbu,
        "nlvr2": open_nlvr2,
        "text": open_text,
    }
    if name not in openers:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return openers[name](raw_root, **common, **options)


# --- image loading in workers -----------------------------------------------------------------------------------

Processed = tuple[str, dict[str, Any]] | Reject  # (split, row) or a reject


def materialize(item: RawItem, options: ImageOptions, roots: dict[str, str] | None = None) -> Processed:
    """Turn a record into a finished row by loading its images (rejects pass through unchanged).

    ``roots``: the caller's cache of resolved dataset roots for a batch of records
    (:func:`~vlmo_pipeline.data.images.read_image_source`).
    """
    if isinstance(item, Reject):
        return item
    row = dict(item.fields)
    for column, source in item.images.items():
        try:
            row[column] = load_image(source, options, roots)
        except ImageRejected as rejected:
            return Reject(item.record_id, source.describe(), rejected.reason, rejected.detail, split=item.split)
    return item.split, row


#: One image to load on a worker: ImageSource's fields (path, offset, length, root) as a plain tuple.
ImageTask = tuple[str, int | None, int | None, str | None]
#: A worker's answer for one image: the bytes to store, or (reason, detail) of its rejection.
ImageResult = bytes | tuple[str, str]


def _image_tasks(chunk: list[RawItem]) -> list[ImageTask]:
    """The images of a chunk's records, in record and column order: all a worker needs to know.

    The records themselves (captions, ids, splits) stay in the parent, which assembles the rows: a task and its
    result are then flat lists of strings and bytes, cheap to pickle in the parent and to pass through the
    scheduler (which, with a local cluster, runs in the parent too), instead of dataclasses and row dicts.
    """
    return [
        (source.path, source.offset, source.length, source.root)
        for item in chunk
        if not isinstance(item, Reject)
        for source in item.images.values()
    ]


def _pack_tasks(tasks: list[ImageTask]) -> bytes:
    """A chunk's image tasks as one opaque bytes argument: Dask walks a task's arguments object by object
    (looking for futures) and the graph is pickled by the client and again by the scheduler, both in the
    parent; a bytes object is one object to walk and a memcpy to pickle."""
    return pickle.dumps(tasks, protocol=pickle.HIGHEST_PROTOCOL)


def _load_images(packed: bytes, options: ImageOptions) -> list[ImageResult]:
    """The Dask task: read and validate each image of :func:`_pack_tasks` ' list. Idempotent (reads only), so a
    retry is safe."""
    roots: dict[str, str] = {}  # each dataset root resolved once per task
    results: list[ImageResult] = []
    for path, offset, length, root in pickle.loads(packed):
        try:
            results.append(load_image(ImageSource(path, offset, length, root), options, roots))
        except ImageRejected as rejected:
            results.append((rejected.reason, rejected.detail))
    return results


def _assemble(chunk: list[RawItem], images: list[ImageResult]) -> Iterator[Processed]:
    """The chunk's rows and rejects, from its records and the worker's image results (as :func:`materialize`
    gives them: a record is rejected for the first of its images, in column order, that was rejected)."""
    position = 0
    for item in chunk:
        if isinstance(item, Reject):
            yield item
            continue
        row, reject = dict(item.fields), None
        for column, source in item.images.items():
            result = images[position]
            position += 1
            if reject is not None:
                continue  # a later image of an already rejected record (materialize would not have read it)
            if isinstance(result, tuple):
                reject = Reject(item.record_id, source.describe(), result[0], result[1], split=item.split)
            else:
                row[column] = result
        yield reject if reject is not None else (item.split, row)


def _chunks(items: Iterable[RawItem], size: int) -> Iterator[list[RawItem]]:
    chunk: list[RawItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _item_id(item: RawItem) -> str:
    return item.record if isinstance(item, Reject) else item.record_id


# Dask settings of an ingest run: nothing may reach outside the machine or need the dashboard's bokeh; the
# dashboard is off (so no "Port 8787 is already in use" warnings), no GPU probing.
DASK_CONFIG: dict[str, Any] = {
    "distributed.diagnostics.nvml": False,
    "distributed.dashboard.export-tool": False,
    "distributed.worker.daemon": True,
}


#: Seconds a LocalCluster worker (and its nanny) waits for a vanished scheduler before it exits (also the
#: nanny's limit for starting its worker process, so not too short on a loaded machine).
WORKER_DEATH_TIMEOUT_S = 30


@contextlib.contextmanager
def dask_client(config: IngestConfig) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``config.cluster``: a LocalCluster started (and closed) here, or a
    client of the existing cluster at that address (only the client is closed)."""
    # Dask logs about 60 INFO lines per cluster start and stop (scheduler, nanny and worker addresses, plugins);
    # only its warnings belong on the console. It reads its logging level when `distributed` is first imported, in
    # this process and in each worker process, which inherits the environment. DASK_LOGGING__DISTRIBUTED=info
    # brings the lines back.
    level = os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    import dask

    with dask.config.set({"logging.distributed": level}):
        from distributed import Client, LocalCluster
    logging.getLogger("distributed").setLevel(level.upper())  # when `distributed` was imported earlier

    with dask.config.set(DASK_CONFIG):
        if config.cluster == LOCAL_CLUSTER:
            cluster = LocalCluster(
                n_workers=config.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                worker_dashboard_address=None,
                memory_limit="auto" if config.worker_memory_limit is None else config.worker_memory_limit,
                # The scheduler and nannies live in this process. Each worker process already exits when its parent
                # dies (SIGKILL, SIGTERM: tests/data/test_no_debris.py); death_timeout is the fallback for a worker
                # that is left without its scheduler: it exits after this many seconds instead of lingering.
                death_timeout=WORKER_DEATH_TIMEOUT_S,
            )
            try:
                # Results come straight from the worker that holds them instead of through the scheduler: with a
                # local cluster both live in this process, so the hop through the scheduler cost the parent a
                # second receive and send of every image (parent CPU per record 55 -> 30-44 µs, measured with
                # 512-record chunks). Local workers are always reachable; an external cluster keeps the default.
                with Client(cluster, direct_to_workers=True) as client:
                    yield client
            finally:
                cluster.close()
        else:
            with Client(config.cluster) as client:
                yield client


def process_items(
    items: Iterable[RawItem],
    config: IngestConfig,
    total: int | None = None,
    name: str = "?",
    client: Any = None,
) -> Iterator[Processed]:
    """Materialise records in input order, on Dask workers unless the input is small or ``config.workers`` is 0
    (or 1 with a local cluster).

    ``total`` (the expected record count, if known): inputs of at most two chunks run in this process, since
    starting a cluster would cost more than it saves. ``client``: an existing :class:`distributed.Client` to use
    (else one is made from ``config.cluster`` for this call). ``name``: the dataset, for error messages. A chunk
    that still fails after ``config.retries`` re-runs raises :class:`IngestWorkerError`.
    """
    options = config.image_options
    small_input = total is not None and total <= 2 * config.chunk_size
    single = config.workers == 0 or (config.workers == 1 and config.cluster == LOCAL_CLUSTER)
    if client is None and (single or small_input):
        roots: dict[str, str] = {}  # one run, one source: its root is resolved once
        for item in items:
            yield materialize(item, options, roots)
        return
    with contextlib.nullcontext(client) if client is not None else dask_client(config) as pool:
        if config.max_inflight_chunks:
            max_inflight = config.max_inflight_chunks
        else:
            max_inflight = 2 * max(1, sum(pool.nthreads().values()) or config.workers)  # 2 per worker thread
        run = uuid.uuid4().hex[:8]  # own task keys: never share results with another run on the same cluster
        # (future, chunk index, the chunk's records): the records' metadata waits here for its images, so the
        # parent holds at most max_inflight chunks of metadata plus the results being assembled.
        pending: deque = deque()

        def collect() -> Iterator[Processed]:
            future, index, chunk = pending.popleft()
            try:
                images = future.result()
            except Exception as error:
                raise IngestWorkerError(
                    f"[ingest {name}] chunk {index} (records {_item_id(chunk[0])} .. {_item_id(chunk[-1])}) failed "
                    f"on the Dask cluster ({config.cluster}) after {config.retries} retries: "
                    f"{type(error).__name__}: {error}"
                ) from error
            finally:
                future.release()
            return _assemble(chunk, images)

        try:
            for index, chunk in enumerate(_chunks(items, config.chunk_size)):
                tasks = _image_tasks(chunk)
                if tasks:
                    future = pool.submit(
                        _load_images,
                        _pack_tasks(tasks),
                        options,
                        key=f"ingest-{name}-{run}-chunk-{index}",
                        retries=config.retries,
                        pure=False,
                    )
                else:  # only rejects: nothing for a worker to do, but the order of the output is kept
                    future = _Done([])
                pending.append((future, index, chunk))
                del chunk, tasks, future
                if len(pending) >= max_inflight:
                    yield from collect()
            while pending:
                yield from collect()
        finally:
            if pending:
                pool.cancel([entry[0] for entry in pending if not isinstance(entry[0], _Done)])


class _Done:
    """A finished stand-in for a Dask future (a chunk without images)."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value

    def release(self) -> None:
        pass


# --- the driver -------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def format_summary(name: str, manifest: Mapping[str, Any]) -> str:
    """The one-line summary printed at the end of an ingest run."""
    rows = ", ".join(f"{split}={count}" for split, count in manifest["splits"].items()) or "none"
    by_reason = manifest.get("rejects_by_reason", {})
    reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(by_reason.items()))
    rejects = f"{manifest['rejects']} rejects" + (f" ({reasons})" if reasons else "")
    return f"[ingest {name}] rows: {rows}; {rejects}; {len(manifest['shards'])} shards"


def ingest_dataset(
    name: str,
    raw_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: IngestConfig = IngestConfig(),
    image_root: str | os.PathLike | None = None,
    show_progress: bool = True,
    reader_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest raw dataset ``name`` from ``raw_root`` into Arrow shards in ``out_dir`` (the dataset's own folder,
    e.g. ``data/03_primary/coco``); return the manifest.

    ``image_root``: vqav2 only, the COCO root holding ``train2014/`` and ``val2014/`` (default
    ``<raw_root>/../coco``). ``reader_options``: extra keyword arguments for the family's ``open_*`` reader
    (explicit file paths replacing the standard names, see each reader). A re-run replaces the previous output.

    With ``config.num_partitions`` > 1, ``out_dir`` receives partition ``config.partition``'s share only (normally
    :func:`vlmo_pipeline.data.partitions.partition_dir` of the dataset folder), a complete mini-dataset whose
    manifest also records the partition and a fingerprint of the whole record stream (what the merge compares).
    The outcome checks apply to the partition's own counts, so a machine whose copy of the raw tree is broken fails
    there instead of hiding in the merged sums.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    source = open_raw_source(name, raw_root, config, image_root, reader_options)
    out_dir = prepare_output_dir(out_dir, extra_files=[*source.artifacts, FAILURE_NAME])
    items, expected, label, selector = source.items, source.total, name, None
    if config.num_partitions > 1:
        from vlmo_pipeline.data.partitions import PartitionSelector  # imported here: partitions imports this module

        selector = PartitionSelector(config.partition, config.num_partitions)
        items, expected = selector.select(source.items), selector.share(source.total)
        label = f"{name} {selector.label}"
    writers = SplitWriters(
        out_dir,
        schema_for(name),
        shard_rows=config.shard_rows,
        shard_bytes=config.shard_bytes,
        batch_rows=config.batch_rows,
    )
    rejects = RejectLog(out_dir)
    rows_per_split: Counter[str] = Counter()
    tally = OutcomeTally()
    # The bar counts written rows against the number of annotated records (rejects shown as a postfix).
    progress = Progress(expected, f"ingest {label}", unit="row", mode="auto" if show_progress else "off")
    unshown = 0  # rows written but not yet counted on the bar
    try:
        total = expected if source.has_images else 0  # no images: nothing for workers to do
        with contextlib.closing(process_items(items, config, total, name)) as results:
            for result in results:
                if isinstance(result, Reject):
                    rejects.add(result)
                    tally.add(result)
                    if rejects.count % 100 == 1:
                        progress.postfix["rejects"] = rejects.count
                    continue
                split, row = result
                writers.write(split, row)
                rows_per_split[split] += 1
                unshown += 1
                if unshown >= PROGRESS_ROWS:
                    progress.update(unshown, rejects=rejects.count or None)
                    unshown = 0
        if unshown:
            progress.update(unshown, rejects=rejects.count or None)
        shards = writers.close()
        rejects.close()
    except BaseException:
        # Leave no temporary shard behind; finished shards stay but without a manifest the folder reads as
        # incomplete, and the next run removes them.
        writers.abort()
        rejects.abort()
        raise
    finally:
        progress.close()

    for artifact_name, content in source.artifacts.items():
        write_json_atomic(out_dir / artifact_name, content)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "dataset": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "splits": {
            split: rows_per_split.get(split, 0)
            for split in [*source.splits, *sorted(set(rows_per_split) - set(source.splits))]
        },
        "shards": shard_infos_to_json(shards),
        "rejects": rejects.count,
        "rejects_by_reason": dict(sorted(rejects.by_reason.items())),
        "sources": [str(Path(s)) for s in source.sources],
        "parameters": _jsonable(
            {
                **asdict(config),
                "raw_root": raw_root,
                "image_root": image_root,
                "reader_options": dict(reader_options or {}),
            }
        ),
        "columns": schema_for(name).names,
        "artifacts": sorted(source.artifacts),
        "info": _jsonable(source.info),
    }
    if selector is not None:
        manifest["partition"] = selector.record()
    problems, outcome = check_outcome(name, manifest["splits"], tally, config.max_reject_rate)
    if problems:
        summary = {
            "dataset": name,
            "status": "failed",
            "problems": problems,
            **outcome,
            "rejects_file": str(out_dir / REJECTS_NAME),
            "shards": manifest["shards"],
            "parameters": manifest["parameters"],
        }
        write_json_atomic(out_dir / FAILURE_NAME, summary)
        message = format_failure(label, problems, outcome)
        print(message, flush=True)
        raise IngestOutcomeError(message, summary)
    write_manifest(out_dir, manifest)
    print(format_summary(label, manifest), flush=True)
    return manifest


# --- outcome checks ---------------------------------------------------------------------------------------------


@dataclass
class OutcomeTally:
    """Reject counts for the outcome checks: per split, whole-row (``rows``) and part-of-a-row (``parts``)
    rejects, plus the reasons; rejects without a split count for the dataset only."""

    rows: Counter = field(default_factory=Counter)
    parts: Counter = field(default_factory=Counter)
    reasons: dict[str | None, Counter] = field(default_factory=dict)

    def add(self, reject: Reject) -> None:
        (self.parts if reject.partial else self.rows)[reject.split] += 1
        self.reasons.setdefault(reject.split, Counter())[reject.reason] += 1


def check_outcome(
    name: str, kept: Mapping[str, int], tally: OutcomeTally, max_reject_rate: float
) -> tuple[list[str], dict[str, Any]]:
    """(problems, per-split counts) of a finished run; any problem fails it.

    A split fails when it had input (a row kept or any reject tagged with it) but kept no row, or when its
    row-reject rate ``rejected rows / (kept + rejected rows)`` exceeds ``max_reject_rate``; the dataset as a whole
    fails the same two ways (counting also the rejects no split could be assigned to, e.g. an entry naming an
    unknown split). Rejects of part of a row (one caption, one VQA question) do not count into the rate, but
    they count as input: a split whose every question was rejected fails as empty.
    """
    problems: list[str] = []
    splits: dict[str, Any] = {}
    # Rejects tagged with a split the manifest does not list (a reader's internal name, e.g. VQA "val" when it
    # is written as trainable_val + rest_val) count for the dataset only.
    for split in kept:
        rows, parts = tally.rows.get(split, 0), tally.parts.get(split, 0)
        count = kept.get(split, 0)
        rate = rows / (count + rows) if count + rows else 0.0
        splits[split] = {
            "kept": count,
            "rejected_rows": rows,
            "rejected_parts": parts,
            "reject_rate": round(rate, 4),
            "top_reasons": dict(tally.reasons.get(split, Counter()).most_common(5)),
        }
        if count == 0 and rows + parts > 0:
            problems.append(f"split {split!r}: every record rejected ({rows + parts} rejects, 0 kept)")
        elif rate > max_reject_rate:
            problems.append(
                f"split {split!r}: reject rate {rate:.1%} > max_reject_rate {max_reject_rate:.1%} "
                f"({rows} rejected, {count} kept)"
            )
    total_kept = sum(kept.values())
    total_rows = sum(tally.rows.values())
    total_rejects = total_rows + sum(tally.parts.values())
    rate = total_rows / (total_kept + total_rows) if total_kept + total_rows else 0.0
    overall = Counter()
    for counter in tally.reasons.values():
        overall.update(counter)
    unassigned = sum(n for counter in (tally.rows, tally.parts) for split, n in counter.items() if split not in kept)
    dataset = {
        "kept": total_kept,
        "rejected_rows": total_rows,
        "rejects": total_rejects,
        "unassigned_rejects": unassigned,
        "reject_rate": round(rate, 4),
        "top_reasons": dict(overall.most_common(5)),
    }
    if total_kept == 0 and total_rejects > 0:
        problems.append(f"dataset {name!r}: no row kept ({total_rejects} rejects)")
    elif rate > max_reject_rate and not any(p.startswith("split") for p in problems):
        problems.append(f"dataset {name!r}: reject rate {rate:.1%} > max_reject_rate {max_reject_rate:.1%}")
    return problems, {"splits": splits, "total": dataset}


def format_failure(name: str, problems: list[str], outcome: Mapping[str, Any]) -> str:
    """The message of a failed run: what failed, then kept/rejected counts and top reasons per split."""
    lines = [f"[ingest {name}] FAILED: " + "; ".join(problems)]
    for split, counts in outcome["splits"].items():
        if not counts["kept"] and not counts["rejected_rows"] and not counts["rejected_parts"]:
            continue  # a split without any input (e.g. no restval entries)
        reasons = ", ".join(f"{r}={n}" for r, n in counts["top_reasons"].items()) or "none"
        lines.append(
            f"  {split}: kept {counts['kept']}, rejected {counts['rejected_rows']} rows + "
            f"{counts['rejected_parts']} parts (top reasons: {reasons})"
        )
    total = outcome["total"]
    reasons = ", ".join(f"{r}={n}" for r, n in total["top_reasons"].items()) or "none"
    lines.append(
        f"  all: kept {total['kept']}, {total['rejects']} rejects ({total['unassigned_rejects']} without "
        f"a split; top reasons: {reasons}). Good rows and rejects.jsonl were kept for inspection; no "
        f"manifest.json was written (see {FAILURE_NAME})."
    )
    return "\n".join(lines)
