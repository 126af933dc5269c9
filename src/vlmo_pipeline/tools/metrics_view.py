"""`make metrics`: the evaluation numbers as one small Markdown table per task instead of DVC's one wide line.

Reads ``dvc metrics show --json`` (or ``dvc metrics diff --json`` with ``--diff``), so it shows exactly what DVC
tracks, for the workspace or any revision DVC can read. Each table is one group of metrics.json (``retrieval.coco``,
``vqa``, ``vqa.by_family``, ``nlvr2``, ``itm``, ...) with the matching ``chance.*`` value beside each number;
``model.stages.<stage>.*`` becomes one table with a row per training stage.

    python -m vlmo_pipeline.tools.metrics_view [--diff [REV]] [--all] [TARGET ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: groups shown by default, in this order (``--all`` adds timing and model details)
MAIN_GROUPS = ("retrieval", "vqa", "nlvr2", "itm")
TITLES = {
    "retrieval.coco": "COCO retrieval (Karpathy test), recall@K %",
    "retrieval.f30k": "Flickr30K retrieval (test), recall@K %",
    "vqa": "VQA score %",
    "vqa.by_type": "VQA score by answer type %",
    "vqa.by_family": "VQA score by question family %",
    "nlvr2": "NLVR2 accuracy %",
    "itm": "Image-text matching on COCO test (1 positive + 1 negative per image) %",
    "model.stages": "Training stages",
    "timing": "Evaluation time, seconds",
    "model": "Model",
}


class MetricsError(RuntimeError):
    """DVC could not produce the metrics; the message says why."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def _dvc() -> str:
    beside = Path(sys.executable).with_name("dvc")
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    if found is None:
        raise MetricsError("dvc not found: run `make setup` (or activate .venv)")
    return found


def _dvc_json(args: list[str]) -> Any:
    result = subprocess.run([_dvc(), *args, "--json"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise MetricsError(f"`dvc {' '.join(args)}` failed (exit {result.returncode}): {result.stderr.strip()}")
    try:
        return json.loads(result.stdout or "{}")
    except json.JSONDecodeError as error:
        raise MetricsError(f"`dvc {' '.join(args)} --json` printed something that is not JSON: {error}") from error


def workspace_columns(shown: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``dvc metrics show --json`` -> ``{revision: flat metrics}`` (every metrics file of a revision merged)."""
    columns: dict[str, dict[str, Any]] = {}
    for revision, entry in shown.items():
        if "error" in entry:
            raise MetricsError(f"DVC could not read the metrics of {revision}: {entry['error']}")
        merged: dict[str, Any] = {}
        for path, content in entry.get("data", {}).items():
            if "error" in content:
                problem = content["error"]
                if isinstance(problem, dict) and problem.get("type") == "FileNotFoundError":
                    raise MetricsError(f"{path} not found ({revision or 'workspace'}): run `make demo` first")
                raise MetricsError(f"{path} ({revision or 'workspace'}): {problem}")
            merged.update(flatten(content.get("data", {})))
        columns[revision or "workspace"] = merged  # DVC names the workspace ""
    return columns


def diff_columns(diffed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``dvc metrics diff --json`` -> ``{"old": ..., "new": ..., "change": ...}`` flat metrics."""
    columns: dict[str, dict[str, Any]] = {"old": {}, "new": {}, "change": {}}
    for _path, metrics in diffed.get("diff", {}).items():
        for name, values in metrics.items():
            for column in columns:
                columns[column][name] = values.get("diff" if column == "change" else column)
    return columns


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 0.05 or value == 0 else f"{value:.3g}"
    return str(value)


def _group_of(name: str) -> tuple[str, str]:
    group, _, leaf = name.rpartition(".")
    return group, leaf


def render(columns: dict[str, dict[str, Any]], show_all: bool = False) -> str:
    """One Markdown table per metrics group; a ``chance`` column where metrics.json has chance values."""
    first = next(iter(columns.values()), {})
    names = [name for name in first if not name.startswith("chance.")]
    for other in columns.values():
        names += [name for name in other if name not in names and not name.startswith("chance.")]
    groups: dict[str, list[str]] = {}
    stage_rows: dict[str, dict[str, dict[str, Any]]] = {}
    for name in names:
        top = name.split(".", 1)[0]
        if top not in MAIN_GROUPS and not show_all:
            continue
        if name.startswith("model.stages."):
            _, _, stage, field = name.split(".", 3)
            for revision, values in columns.items():
                stage_rows.setdefault(revision, {}).setdefault(stage, {})[field] = values.get(name)
            continue
        group, _ = _group_of(name)
        groups.setdefault(group or top, []).append(name)
    revisions = list(columns)
    lines: list[str] = []
    for group, members in groups.items():
        has_chance = any(f"chance.{name}" in values for values in columns.values() for name in members)
        header = ["metric", *revisions] + (["chance"] if has_chance else [])
        lines += [f"### {TITLES.get(group, group)}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name in members:
            row = [_group_of(name)[1]] + [_format(columns[revision].get(name)) for revision in revisions]
            if has_chance:
                row.append(
                    _format(
                        next(
                            (values.get(f"chance.{name}") for values in columns.values() if f"chance.{name}" in values),
                            None,
                        )
                    )
                )
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    for revision, stages in stage_rows.items():
        fields = list(dict.fromkeys(field for values in stages.values() for field in values))
        title = TITLES["model.stages"] + (f" ({revision})" if len(stage_rows) > 1 else "")
        lines += [f"### {title}", "", "| stage | " + " | ".join(fields) + " |", "|" + "---|" * (len(fields) + 1)]
        lines += [
            "| " + " | ".join([stage] + [_format(values.get(field)) for field in fields]) + " |"
            for stage, values in stages.items()
        ]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--diff",
        nargs="?",
        const="HEAD",
        default=None,
        metavar="REV",
        help="compare the workspace with REV (default HEAD) through `dvc metrics diff`",
    )
    parser.add_argument("--all", action="store_true", help="also the timing and model tables")
    parser.add_argument("targets", nargs="*", help="metrics files (default: the metrics of dvc.yaml)")
    args = parser.parse_args(argv)
    try:
        if args.diff is not None:
            columns = diff_columns(_dvc_json(["metrics", "diff", args.diff, *args.targets]))
            if not columns["new"] and not columns["old"]:
                print(f"no metric differs between {args.diff} and the workspace")
                return 0
        else:
            columns = workspace_columns(_dvc_json(["metrics", "show", *args.targets]))
            if not any(columns.values()):
                print("error: no metrics yet: run `make demo` (or `dvc repro`) first", file=sys.stderr)
                return 1
    except MetricsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(render(columns, show_all=args.all), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
