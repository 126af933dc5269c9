"""Hostile raw trees (issue 12): FIFOs, links to /dev/zero, links out of the dataset root, oversized files, and
images whose plain RGB conversion is wrong. Every case is a reject with its reason and the run ends promptly.

Each ingestion runs in a subprocess with a timeout, so a regression (a FIFO opened for reading blocks forever)
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmo_pipeline.data.arrow_io import read_rejects, read_split
from vlmo_pipeline.data.images import ImageOptions, decode_rgb, needs_normalization, validate_image_bytes
from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset
from vlmo_pipeline.data.raw.safe_io import FileRejected, read_regular_file

try:
    from . import raw_trees
except ImportError:  # tests/data is not a package
    import raw_trees

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")

REPO = Path(__file__).resolve().parents[2]


def run_ingest(name: str, raw: Path, out: Path, timeout: float = 60, **config) -> tuple[dict, list[dict]]:
    """Ingest in a fresh Python process (killed after ``timeout`` s); return (manifest, rejects)."""
    settings = {"workers": 0, "min_answer_count": 1, "max_reject_rate": 1.0, **config}
    code = (
        "import json, sys\n"
        "from vlmo_pipeline.data.ingest import IngestConfig, ingest_dataset\n"
        f"m = ingest_dataset({name!r}, {str(raw)!r}, {str(out)!r}, IngestConfig(**{settings!r}), show_progress=False)\n"
        "print(json.dumps(m['splits']))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), read_rejects(out)


def coco_with(root: Path, names: list[str]) -> None:
    """A Karpathy COCO tree listing ``names`` (all in train2014/), five captions each."""
    entries = [raw_trees.karpathy_entry(n, "train", ["a", "b", "c", "d", "e"], filepath="train2014") for n in names]
    raw_trees.write_json(root / "karpathy" / "dataset_coco.json", {"images": entries})


def test_fifo_devzero_and_outside_links_are_rejects_and_ingestion_finishes(tmp_path):
    root = tmp_path / "coco"
    good = raw_trees.image_bytes((30, 20))
    raw_trees.write(root / "train2014" / "good.jpg", good)
    os.mkfifo(root / "train2014" / "fifo.jpg")
    os.symlink("/dev/zero", root / "train2014" / "zero.jpg")
    outside = raw_trees.write(tmp_path / "elsewhere" / "outside.jpg", raw_trees.image_bytes((31, 20)))
    os.symlink(outside, root / "train2014" / "outside.jpg")
    os.symlink("/etc/passwd", root / "train2014" / "passwd.jpg")
    os.symlink("good.jpg", root / "train2014" / "inside_link.jpg")  # relative link inside the root: fine
    os.symlink("loop.jpg", root / "train2014" / "loop.jpg")
    raw_trees.write(root / "train2014" / "big.jpg", good + b"\0" * 5000)  # over a 4 KB limit
    names = ["good.jpg", "fifo.jpg", "zero.jpg", "outside.jpg", "passwd.jpg", "inside_link.jpg", "loop.jpg", "big.jpg"]
    coco_with(root, names)

    splits, rejects = run_ingest("coco", root, tmp_path / "out", timeout=60, max_image_bytes=4096)
    by_record = {r["record"]: r for r in rejects}
    assert {record: r["reason"] for record, r in by_record.items()} == {
        "fifo.jpg": "not_regular_file",
        "zero.jpg": "not_regular_file",
        "outside.jpg": "outside_root",
        "passwd.jpg": "not_regular_file" if not os.path.isfile("/etc/passwd") else "outside_root",
        "loop.jpg": "unreadable_file",
        "big.jpg": "too_large",
    }
    for record, reject in by_record.items():  # every reject names its file
        assert reject["source"].endswith(f"train2014/{record}")
    assert "FIFO" in by_record["fifo.jpg"]["detail"] and "character device" in by_record["zero.jpg"]["detail"]
    assert "allow_outside_symlinks" in by_record["outside.jpg"]["detail"]
    assert splits["train"] == 2
    rows = read_split(tmp_path / "out", "train").to_pylist()
    assert [(r["image_id"], r["image"] == good) for r in rows] == [("good.jpg", True), ("inside_link.jpg", True)]


def test_outside_links_allowed_by_parameter_and_a_linked_root_is_fine(tmp_path):
    real = tmp_path / "store" / "coco"
    outside = raw_trees.write(tmp_path / "elsewhere" / "outside.jpg", raw_trees.image_bytes((31, 20)))
    (real / "train2014").mkdir(parents=True)
    os.symlink(outside, real / "train2014" / "outside.jpg")
    raw_trees.write(real / "train2014" / "good.jpg", raw_trees.image_bytes((30, 20)))
    coco_with(real, ["good.jpg", "outside.jpg"])
    linked_root = tmp_path / "raw_coco"
    os.symlink(real, linked_root)  # data/01_raw/coco -> /mnt/...: the root itself may be a link

    splits, rejects = run_ingest("coco", linked_root, tmp_path / "out_default")
    assert splits["train"] == 1 and [(r["record"], r["reason"]) for r in rejects] == [("outside.jpg", "outside_root")]
    splits, rejects = run_ingest("coco", linked_root, tmp_path / "out_allowed", allow_outside_symlinks=True)
    assert splits["train"] == 2 and rejects == []


def test_img2dataset_fifo_caption_and_fifo_image(tmp_path):
    output = tmp_path / "sbu" / "images"
    samples = [
        {"key": f"00000000{i}", "caption": f"caption {i}", "image": raw_trees.image_bytes((20 + i, 20))}
        for i in range(3)
    ]
    raw_trees.img2dataset_output(output, samples, layout="files")
    folder = next(p for p in output.iterdir() if p.is_dir())
    (folder / "000000001.txt").unlink()
    os.mkfifo(folder / "000000001.txt")
    (folder / "000000002.jpg").unlink()
    os.mkfifo(folder / "000000002.jpg")
    splits, rejects = run_ingest("sbu", tmp_path / "sbu", tmp_path / "out", timeout=60)
    assert splits == {"train": 1}
    assert sorted((r["record"], r["reason"]) for r in rejects) == [
        ("000000001", "not_regular_file"),
        ("000000002", "not_regular_file"),
    ]


def test_text_corpus_skips_fifos_and_outside_links_as_rejects(tmp_path, datasamples):
    root = tmp_path / "text"
    root.mkdir()
    shutil.copy(datasamples / "text" / "wikitext-103-raw" / "wiki.valid.raw", root / "wiki.valid.raw")
    os.mkfifo(root / "fifo.valid.raw")
    os.symlink(datasamples / "text" / "wikitext-103-raw" / "wiki.test.raw", root / "link.valid.raw")
    splits, rejects = run_ingest("text", root, tmp_path / "out", timeout=60)
    assert splits == {"val": 7}
    assert sorted((r["record"], r["reason"]) for r in rejects) == [
        ("fifo.valid.raw", "not_regular_file"),
        ("link.valid.raw", "outside_root"),
    ]


def test_read_regular_file_bounds_and_ranges(tmp_path):
    path = raw_trees.write(tmp_path / "f.bin", bytes(range(256)) * 4)
    assert read_regular_file(path, limit=1024) == path.read_bytes()
    assert read_regular_file(path, limit=16, offset=10, length=5) == bytes(range(10, 15))
    with pytest.raises(FileRejected) as raised:
        read_regular_file(path, limit=1023)
    assert raised.value.reason == "too_large"
    with pytest.raises(FileRejected) as raised:
        read_regular_file(path, limit=4096, offset=1020, length=10)
    assert raised.value.reason == "truncated_image"
    with pytest.raises(FileRejected) as raised:
        read_regular_file(tmp_path / "absent", limit=10)
    assert raised.value.reason == "missing_file"
    # /proc files report size 0 but have content: the limit + 1 read still stops them.
    if Path("/proc/self/status").exists():
        with pytest.raises(FileRejected) as raised:
            read_regular_file("/proc/self/status", limit=8)
        assert raised.value.reason == "too_large"


# --- pixel modes and EXIF -----------------------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def test_16bit_grey_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    data = encoded(Image.fromarray(ramp), "PNG")  # PIL picks mode I;16 for uint16
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((4, 0))[0] == 255  # the plain conversion clips
    stored = validate_image_bytes(data)
    assert stored != data
    pixels = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"))[..., 0]
    assert np.abs(pixels.astype(int) - np.rint(ramp / 257).astype(int)).max() <= 1


def test_transparency_flattened_on_white_and_cmyk_converted():
    la = Image.new("LA", (6, 4), (0, 0))  # black, fully transparent
    assert np.asarray(decode_rgb(validate_image_bytes(encoded(la, "PNG")))).min() == 255
    palette = Image.new("P", (6, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    data = encoded(palette, "PNG", transparency=0)
    assert needs_normalization(Image.open(io.BytesIO(data)))
    assert Image.open(io.BytesIO(validate_image_bytes(data))).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (6, 4), (0, 255, 255, 0))  # red in CMYK
    stored = validate_image_bytes(encoded(cmyk, "JPEG", quality=95))
    image = Image.open(io.BytesIO(stored))
    assert image.mode == "RGB" and image.format == "PNG"
    red, green, blue = image.getpixel((2, 2))
    assert red > 200 and green < 60 and blue < 60
    plain = encoded(Image.new("RGB", (6, 4), (10, 20, 30)), "PNG")
    assert validate_image_bytes(plain) == plain  # nothing to fix: original bytes


def test_exif_orientation_applied_or_ignored_by_parameter():
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encoded(image, "JPEG", exif=exif.tobytes())
    upright = Image.open(io.BytesIO(validate_image_bytes(data)))
    assert upright.size == (20, 40)
    assert validate_image_bytes(data, ImageOptions(exif_transpose=False)) == data


def test_exif_parameter_reaches_the_ingest(tmp_path):
    root = tmp_path / "coco"
    exif = Image.Exif()
    exif[0x0112] = 8
    raw_trees.write(
        root / "train2014" / "rotated.jpg",
        encoded(Image.new("RGB", (40, 20), (0, 90, 200)), "JPEG", exif=exif.tobytes()),
    )
    coco_with(root, ["rotated.jpg"])
    ingest_dataset("coco", root, tmp_path / "out", IngestConfig(workers=0), show_progress=False)
    stored = read_split(tmp_path / "out", "train").column("image").to_pylist()[0]
    assert Image.open(io.BytesIO(stored)).size == (20, 40)
