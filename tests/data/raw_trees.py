"""Builders of small raw dataset trees (real on-disk formats) for the ingestion tests."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SAMPLES = SHARED / "datasamples"


def image_bytes(size=(24, 16), color=(200, 30, 30), fmt="JPEG", mode="RGB") -> bytes:
    """Encoded bytes of a small image with a colour gradient (so different sizes give different bytes)."""
    image = Image.new(mode, size, color if mode == "RGB" else 128)
    for x in range(size[0]):
        image.putpixel((x, 0), (x * 7 % 256, 0, 0) if mode == "RGB" else x % 256)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def write_json(path: Path, obj) -> Path:
    return write(path, json.dumps(obj))


def karpathy_entry(filename: str, split: str, captions: list[str], filepath: str | None = None, cocoid: int = 0):
    entry = {
        "filename": filename,
        "split": split,
        "sentences": [{"raw": c, "tokens": c.lower().split(), "sentid": i} for i, c in enumerate(captions)],
        "imgid": cocoid,
    }
    if filepath is not None:
        entry["filepath"] = filepath
        entry["cocoid"] = cocoid
    return entry


def coco_tree(root: Path, specs: list[tuple[str, str, int, list[str]]], image_size=(24, 16)) -> dict[str, bytes]:
    """Karpathy COCO tree. specs: (split, subset train2014/val2014, coco id, captions). Returns name → bytes."""
    entries, written = [], {}
    for index, (split, subset, cocoid, captions) in enumerate(specs):
        name = f"COCO_{subset}_{cocoid:012d}.jpg"
        data = image_bytes((image_size[0] + index, image_size[1]), (index * 40 % 256, 90, 160))
        write(root / subset / name, data)
        written[name] = data
        entries.append(karpathy_entry(name, split, captions, filepath=subset, cocoid=cocoid))
    write_json(root / "karpathy" / "dataset_coco.json", {"images": entries, "dataset": "coco"})
    return written


def img2dataset_output(output_dir: Path, samples: list[dict], layout: str, per_shard: int = 3) -> None:
    """Write img2dataset output. sample: {key, caption, image (bytes|None), status='success', error=''}.

    ``image`` None with status success writes no image file (a missing image); ``caption`` None writes no .txt.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for shard_index in range(0, len(samples), per_shard):
        shard = samples[shard_index : shard_index + per_shard]
        name = f"{shard_index // per_shard:05d}"
        rows = {"key": [], "url": [], "caption": [], "status": [], "error_message": [], "width": [], "height": []}
        members: list[tuple[str, bytes]] = []
        for sample in shard:
            status = sample.get("status", "success")
            rows["key"].append(sample["key"])
            rows["url"].append(f"http://example.invalid/{sample['key']}.jpg")
            rows["caption"].append(sample.get("caption"))
            rows["status"].append(status)
            rows["error_message"].append(sample.get("error") or None)
            rows["width"].append(None)
            rows["height"].append(None)
            if status != "success":
                continue
            if sample.get("image") is not None:
                members.append((f"{sample['key']}.jpg", sample["image"]))
            if sample.get("caption") is not None:
                members.append((f"{sample['key']}.txt", sample["caption"].encode("utf-8")))
            members.append((f"{sample['key']}.json", json.dumps({"key": sample["key"]}).encode()))
        pq.write_table(pa.table(rows), output_dir / f"{name}.parquet")
        write(output_dir / f"{name}_stats.json", json.dumps({"count": len(shard)}))
        if layout == "files":
            for member, data in members:
                write(output_dir / name / member, data)
        else:
            with tarfile.open(output_dir / f"{name}.tar", "w") as archive:
                for member, data in members:
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))


def vqa_annotation(
    question_id: int, image_id: int, answers: list[str], major: str | None = None, answer_type: str = "other"
) -> dict:
    return {
        "question_type": "what",
        "multiple_choice_answer": major if major is not None else answers[0],
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
        "image_id": image_id,
        "answer_type": answer_type,
        "question_id": question_id,
    }


def vqa_files(root: Path, subset: str, questions: list[tuple[int, int, str]], annotations: list[dict] | None):
    """questions: (question id, image id, text)."""
    write_json(
        root / f"v2_OpenEnded_mscoco_{subset}_questions.json",
        {
            "info": {},
            "task_type": "Open-Ended",
            "data_type": "mscoco",
            "license": {},
            "data_subtype": subset,
            "questions": [{"image_id": i, "question": q, "question_id": qid} for qid, i, q in questions],
        },
    )
    if annotations is not None:
        write_json(
            root / f"v2_mscoco_{subset}_annotations.json",
            {"info": {}, "license": {}, "data_subtype": subset, "annotations": annotations},
        )


def nlvr2_line(identifier: str, sentence: str, label: str, directory: int | None = None) -> str:
    entry = {
        "validation": {},
        "sentence": sentence,
        "left_url": "",
        "writer": "1",
        "label": label,
        "right_url": "",
        "synset": "x",
        "query": "x",
        "identifier": identifier,
        "extra_validations": {},
    }
    if directory is not None:
        entry["directory"] = directory
    return json.dumps(entry)
