"""How every demo-world writer puts a file on disk (atomic, no fsync, json.dumps' default style) and the fake
host of every URL it writes."""

from __future__ import annotations

from pathlib import Path

from vlmo_pipeline import files

DEMO_HOST = "https://demo.invalid"


# The demo world is written into a staging folder that is renamed into place when complete, so its single files
# need no fsync (durable=False); parent folders are created on the way. The JSON keeps json.dumps' default style
# (one line unless ``indent``, no final newline), like the real annotation files.


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    files.atomic_write_bytes(path, data, durable=False, parents=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    files.atomic_write_text(path, text, durable=False, parents=True)


def atomic_write_json(path: str | Path, obj: object, indent: int | None = None) -> None:
    files.atomic_write_json(path, obj, indent=indent, trailing_newline=False, durable=False, parents=True)
